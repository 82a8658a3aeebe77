#!/usr/bin/env bash
# The openEO test suite (PyPI openeo-test-suite) in a virtual environment of its own:
# it pins openapi-core 0.18, whose jsonschema dependencies conflict with the STAC
# validators of eoshare's own dev tools. tests/processing/test_openeo_suite.py runs it.
set -euo pipefail
PYTHON="${1:-python3}"
VENV="${2:-.venv/openeo-suite}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import openeo_test_suite' 2>/dev/null; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet 'openeo-test-suite==0.2.2'
fi
echo "openeo-test-suite installed in $VENV" >&2
