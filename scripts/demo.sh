#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the demo (see README).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec ./build/cli/saddle demo --out runs/demo "$@"
