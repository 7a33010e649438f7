#!/usr/bin/env bash
# Regenerate every figure and the book: sets up .venv on first use, executes every notebook with
# papermill and builds the Jupyter Book. Options (all optional):
#   --profile smoke|quick|full   training budget (default quick: 6 to 9 minutes on a 2-core CPU)
#   --only NN                    only notebook NN (repeatable); the book is rebuilt from what exists
#   --device auto|cpu|cuda       where to train (default auto)
# Outputs: build/executed/*.ipynb, figures/*.png, runs/ (cached trainings), build/book/_build/html.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/bootstrap.sh
export VMIVAE_DATA="${VMIVAE_DATA:-$PWD/data}"
exec .venv/bin/python scripts/run_all.py "$@"
