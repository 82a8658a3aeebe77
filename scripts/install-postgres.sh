#!/usr/bin/env bash
# Install Debian's PostgreSQL 15 and PostGIS 3 for the pgstac tests (tests/pg.py starts
# its own cluster in a temporary folder with initdb + pg_ctl; the system service is never
# used). Idempotent: does nothing when initdb and PostGIS are already there. Needs root
# (or sudo) and Debian's package archive.
set -euo pipefail
PGBIN="${EOSHARE_PG_BIN:-/usr/lib/postgresql/15/bin}"
POSTGIS="/usr/share/postgresql/15/extension/postgis.control"

if [ -x "$PGBIN/initdb" ] && [ -f "$POSTGIS" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "error: PostgreSQL 15 with PostGIS 3 is missing and this is not a Debian-like" \
        "system; install them and set EOSHARE_PG_BIN to the folder of initdb" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then
        SUDO="sudo"
    else
        echo "error: PostgreSQL is missing; run 'apt-get install postgresql-15" \
            "postgresql-15-postgis-3' as root" >&2
        exit 1
    fi
fi
echo "installing Debian's postgresql-15 and postgresql-15-postgis-3 (for the pgstac tests)" >&2
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
# the packages' own cluster is not wanted: the tests start theirs
$SUDO mkdir -p /etc/postgresql-common/createcluster.conf.d
echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf.d/eoshare.conf >/dev/null 2>&1 || true
DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends postgresql-15 postgresql-15-postgis-3 >/dev/null
if [ ! -x "$PGBIN/initdb" ] || [ ! -f "$POSTGIS" ]; then
    echo "error: apt installed PostgreSQL but $PGBIN/initdb or PostGIS is still missing" >&2
    exit 1
fi
echo "postgresql installed: $("$PGBIN/postgres" --version)" >&2
