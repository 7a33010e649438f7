#!/usr/bin/env bash
# Regenerate everything: sets up .venv on first use, then trains the quick paper-joint run.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/bootstrap.sh
export VMIVAE_DATA="${VMIVAE_DATA:-$PWD/data}"
exec .venv/bin/vmivae train --preset paper-joint --profile quick --out runs/paper-joint-quick --overwrite
