#!/usr/bin/env bash
# The Python package's tests (python/tests, pytest): builds the package with
# `pip install .` (maturin, from pyproject.toml) into a virtual environment
# made here, for each interpreter in PYTHONS (default: python3; the package
# supports CPython 3.9 and newer), builds the `taskmesh` binary that the
# mixed-mesh test starts, and runs pytest. Installs Debian's python3,
# python3-venv and python3-pip first when they are missing (as root, with
# apt-get). Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHONS=${PYTHONS:-python3}
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing python3, python3-venv and python3-pip for the Python package's tests"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
    else
        echo "python3 with venv is needed for the Python package's tests (apt-get install python3-venv)" >&2
        exit 1
    fi
fi
cargo build --quiet --bin taskmesh
export TASKMESH_BIN=${CARGO_TARGET_DIR:-$PWD/target}/debug/taskmesh
for python in $PYTHONS; do
    version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    venv=${CARGO_TARGET_DIR:-target}/python-$version
    echo "=== Python $version ($python): pip install . into $venv, then pytest"
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet --force-reinstall --no-deps .
    "$venv/bin/python" -m pip install --quiet 'pytest>=7' 'ruff>=0.6'
    # Style, as rustfmt and clippy are for the Rust code (pyproject.toml).
    "$venv/bin/ruff" format --check --quiet python examples/python
    "$venv/bin/ruff" check --quiet python examples/python
    "$venv/bin/python" -m pytest python/tests -q -p no:cacheprovider "$@"
done
