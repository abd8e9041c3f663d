#!/usr/bin/env bash
# The test suite: lint, then pytest (unit tests, then the end-to-end runs on the bundled sample).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

ruff check
ruff format --check
pytest "$@"
