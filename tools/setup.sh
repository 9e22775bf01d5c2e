#!/usr/bin/env bash
# Installs what respkv needs on a Debian machine, idempotently:
#   - Debian's redis-server and redis-tools (the reference server, redis-cli and
#     redis-benchmark used by the conformance harness, tests and benchmarks);
#   - Debian's fiu-utils (fiu-run, fiu-ctrl: libfiu's fault injection, which makes a
#     running node's write/fsync fail in tests/test_durability_standalone.py);
#   - a virtualenv in .venv with respkv installed in editable mode plus test extras.
# Usage: bash tools/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "setup: need root (or sudo) to run: $*" >&2; return 1; fi
}

apt_install() {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null \
        || { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
}

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null && command -v redis-benchmark >/dev/null || missing+=(redis-tools)
command -v fiu-run >/dev/null && command -v fiu-ctrl >/dev/null || missing+=(fiu-utils)
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]} with apt-get"
    apt_install "${missing[@]}"
fi
# Debian starts a system redis-server on 6379 when the package is installed; the
# tools here start their own on free ports, so that one is left alone.

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    if ! "$PYTHON" -m venv .venv 2>/dev/null; then
        echo "setup: installing python3-venv with apt-get"
        rm -rf .venv
        apt_install python3-venv
        "$PYTHON" -m venv .venv
    fi
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
echo "setup: ready (.venv/bin/respkv)"
