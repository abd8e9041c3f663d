#!/usr/bin/env bash
# Creates .venv if missing and installs the locked dependency set (only when the lock changed).
# Sourced by main.sh and test.sh; leaves .venv/bin first on PATH and the offline settings exported.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export KEDRO_DISABLE_TELEMETRY=true
export GX_ANALYTICS_ENABLED=false
export MLFLOW_DISABLE_TELEMETRY=true
export DO_NOT_TRACK=1

python_bin="${PYTHON:-python3.11}"
if [ ! -x .venv/bin/python ]; then
    echo "Creating .venv with $python_bin"
    "$python_bin" -m venv .venv
fi
wanted="$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat .venv/.installed-lock 2>/dev/null)" != "$wanted" ]; then
    echo "Installing the locked dependencies into .venv (first time: a few minutes)"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
    echo "$wanted" > .venv/.installed-lock
fi
export PATH="$PWD/.venv/bin:$PATH"
