#!/usr/bin/env bash
# nginx (Debian's package): tests/ops/test_accel_redirect.py puts it in front of a node
# (X-Accel-Redirect), and benchmarks/bench_downloads.py serves the same file with it side
# by side with eoshare. Idempotent.
set -euo pipefail
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light \
        || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx
    # the package may start a system nginx on port 80; the benchmark runs its own
    (systemctl stop nginx || service nginx stop || true) >/dev/null 2>&1
else
    echo "error: nginx is missing; install it (apt-get install nginx-light)" >&2
    exit 1
fi
