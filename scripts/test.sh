#!/usr/bin/env bash
# The test suite: lint, then pytest (unit tests, then the end-to-end runs on the bundled sample).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

# Debian's packages the tests start for real, installed when missing (apt-get, as root):
# Chromium renders kedro-viz (tests/viz), PostgreSQL backs an MLflow server (the e2e tests).
# Where they cannot be installed, the tests that need them skip and say why.
missing=()
command -v chromium >/dev/null || missing+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ] || ! {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "${missing[@]}"
    } >/dev/null 2>&1; then
        echo "Could not install ${missing[*]} (apt-get, as root): the tests that need them will skip"
    fi
fi

ruff check
ruff format --check
# Two workers for two cores; a file's tests stay on one worker (the end-to-end module shares one
# project across its tests, in order).
pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"
