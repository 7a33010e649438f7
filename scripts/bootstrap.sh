#!/usr/bin/env bash
# Create or refresh the project's virtual environment in .venv (idempotent).
#
# Re-installs only when pyproject.toml changed since the last successful install, so it is cheap to
# call before every command. torch and torchvision are installed first and alone, pinned, so that pip
# takes the exact builds the project is tested with. pip only (no uv/poetry).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
stamp=.venv/.vmivae-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/python ]; then
  exit 0
fi
echo "bootstrap: setting up .venv (first run takes a few minutes)" >&2
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install --quiet -e ".[notebooks,test]"
.venv/bin/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (vmivae)" >/dev/null
echo "$want" > "$stamp"
echo "bootstrap: .venv ready" >&2
