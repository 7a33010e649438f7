#!/usr/bin/env bash
# Run the whole test suite. On a fresh machine it first creates .venv (scripts/bootstrap.sh) and,
# when run as root without a browser, installs Debian's chromium for the book's browser tests.
# Extra arguments go to pytest, e.g. ./run_tests.sh -k mi -x
set -euo pipefail
cd "$(dirname "$0")"
./scripts/bootstrap.sh
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "run_tests: installing chromium for the browser tests" >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
exec .venv/bin/python -m pytest "$@"
