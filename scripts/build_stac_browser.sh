#!/usr/bin/env bash
# Build STAC Browser (the official STAC web UI, npm @radiantearth/stac-browser) for the
# client tests (tests/clients/test_stac_browser.py), from web/stac-browser/package-lock.json.
#
# The result goes to web/stac-browser/dist/ (git-ignored) with a stamp holding the SHA-256
# of the lock file and of this script: when both are unchanged, nothing is done (instant).
# Otherwise: `npm ci` (no install scripts), a copy of the package's sources under .build/,
# two changes for a test build (no eslint plugin, whose packages are not installed; the
# runtime config.js that STAC Browser's Docker image enables; the OpenStreetMap base map
# replaced by a relative URL the test serves, as the tests run offline), then
# `vue-cli-service build`. Needs node and npm (Debian: apt-get install nodejs npm).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SB="$HERE/web/stac-browser"
DIST="$SB/dist"
STAMP="$DIST/.built-from"

want="$(cat "$SB/package-lock.json" "$SB/package.json" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -f "$DIST/index.html" ]]; then
    exit 0
fi

if ! command -v npm >/dev/null; then
    if [[ $(id -u) == 0 ]]; then
        apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
    else
        echo "build_stac_browser: npm is missing (apt-get install nodejs npm)" >&2
        exit 1
    fi
fi

started=$SECONDS
cd "$SB"
# node_modules is kept while the lock file is unchanged (npm ci would start over)
lock="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ "$(cat node_modules/.eoshare-lock 2>/dev/null)" != "$lock" ]]; then
    npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
    echo "$lock" > node_modules/.eoshare-lock
fi
rm -rf .build "$DIST.new"
mkdir -p .build
cp -r node_modules/@radiantearth/stac-browser .build/app
cd .build/app
# its styles import ../../node_modules/ol/ol.css, relative to the package's own folder
ln -s ../../node_modules node_modules
node -e '
const fs = require("fs");
const pkg = JSON.parse(fs.readFileSync("package.json"));
delete pkg.devDependencies["@vue/cli-plugin-eslint"];
fs.writeFileSync("package.json", JSON.stringify(pkg, null, 2));
'
sed -i 's#<!-- <script defer="defer" src="/config.js"></script> -->#<script src="./config.js"></script>#' public/index.html
grep -q 'src="./config.js"' public/index.html
sed -i "s#https://tile.openstreetmap.org/{z}/{x}/{y}.png#./basemap/{z}/{x}/{y}.png#" basemaps.config.js
grep -q './basemap/' basemaps.config.js
NODE_ENV=production node ../../node_modules/@vue/cli-service/bin/vue-cli-service.js build \
    --dest "$DIST.new" --historyMode=hash --pathPrefix=./ --noSourceMaps >../build.log 2>&1 \
    || { grep -v '^ *at ' ../build.log | tail -40 >&2; exit 1; }
cd "$SB"
rm -rf "$DIST" .build
mv "$DIST.new" "$DIST"
echo "$want" > "$STAMP"
echo "build_stac_browser: built in $((SECONDS - started)) s"
