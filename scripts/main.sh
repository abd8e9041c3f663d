#!/usr/bin/env bash
# The main job: environment from the lock, the bundled sample landed as a drop, `dvc repro`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

if [ -z "$(find data/01_raw/drops -mindepth 1 -maxdepth 1 -type d 2>/dev/null)" ]; then
    prodcls drops sample/grocery-store-mini --dest data/01_raw/drops --count 1 --prefix sample
fi
dvc repro "$@"
echo
dvc metrics show data/08_reporting/metrics.json
