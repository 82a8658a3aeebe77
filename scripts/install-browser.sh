#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (tests/web), when it is missing.
# Idempotent: does nothing when /usr/bin/chromium is already there. Needs root (or sudo)
# and Debian's package archive; nothing is downloaded from anywhere else (Playwright's
# own browser builds are never used: the tests launch /usr/bin/chromium).
set -euo pipefail
CHROMIUM="${EOSHARE_CHROMIUM:-/usr/bin/chromium}"

if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "error: $CHROMIUM is missing and this is not a Debian-like system; install Chromium" \
        "and set EOSHARE_CHROMIUM to its path" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then
        SUDO="sudo"
    else
        echo "error: $CHROMIUM is missing; run 'apt-get install chromium' as root" >&2
        exit 1
    fi
fi
echo "installing Debian's chromium with apt (for the browser tests)" >&2
# other jobs on the machine may hold the dpkg lock for a while: wait for it, do not fail
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends chromium fonts-noto-core fonts-noto-cjk fonts-dejavu-core >/dev/null
if [ ! -x "$CHROMIUM" ]; then
    echo "error: apt installed chromium but $CHROMIUM is still missing" >&2
    exit 1
fi
echo "chromium installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")" >&2
