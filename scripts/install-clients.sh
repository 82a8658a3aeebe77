#!/usr/bin/env bash
# The outside clients the client tests (tests/clients) drive, when they are missing:
# Debian's GDAL command-line tools (gdal-bin: gdalinfo with the STACIT and WMTS drivers,
# GDAL 3.6 on Debian 12, older than the rasterio wheel's), curl and wget, and node/npm
# to build STAC Browser; then STAC Browser itself (scripts/build_stac_browser.sh, cached
# by the hash of its lock file). Idempotent; apt needs root (or sudo).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

missing=()
command -v gdalinfo >/dev/null || missing+=(gdal-bin)
command -v curl >/dev/null || missing+=(curl)
command -v wget >/dev/null || missing+=(wget)
command -v npm >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || {
            echo "error: missing ${missing[*]}; run 'apt-get install ${missing[*]}' as root" >&2
            exit 1
        }
        SUDO="sudo"
    fi
    echo "installing ${missing[*]} with apt (for the client tests)" >&2
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
fi
bash "$HERE/build_stac_browser.sh"
