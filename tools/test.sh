#!/usr/bin/env bash
# Installs what the tests need (tools/setup.sh), checks the import contracts
# (lint-imports, configured in pyproject.toml: the package's layers, see
# docs/architecture.md), then runs the unit and integration tests (pytest) and the
# differential conformance harness against redis-server.
# Fails if any of them fails, or if pytest collected no tests.
set -uo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh || exit 1
PY=.venv/bin/python

.venv/bin/lint-imports --no-cache --no-logo
status=$?
if [ $status -ne 0 ]; then
    echo "test: import contracts broken (lint-imports exit $status)" >&2
    exit $status
fi

$PY -m pytest -q -p no:cacheprovider "$@"
status=$?
if [ $status -eq 5 ]; then
    echo "test: pytest collected no tests, which counts as a failure" >&2
    exit 1
elif [ $status -ne 0 ]; then
    echo "test: pytest failed (exit $status)" >&2
    exit $status
fi

$PY -m conformance
status=$?
if [ $status -ne 0 ]; then
    echo "test: conformance failed (exit $status)" >&2
    exit $status
fi
