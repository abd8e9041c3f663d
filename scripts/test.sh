#!/usr/bin/env bash
# The test suite: lint, then pytest (unit tests, then the end-to-end runs on the bundled sample).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

# tests/viz renders kedro-viz in Debian's headless Chromium; without the browser it skips.
if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" != 0 ] || ! {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends chromium
    } >/dev/null 2>&1; then
        echo "Could not install chromium (apt-get, as root): the browser test (tests/viz) will skip"
    fi
fi

ruff check
ruff format --check
pytest "$@"
