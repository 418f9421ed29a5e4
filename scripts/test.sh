#!/usr/bin/env bash
# Every test: the README's test command. The network-namespace tests
# (tests/lan.rs) need iproute2 and iptables, the mesh page's test
# (tests/page.rs) Chromium and chromedriver; where they are missing and this
# runs as root with apt-get, they are installed from the distribution's
# packages first. Without them those tests say so and skip (unless
# TASKMESH_REQUIRE_LAN=1 or TASKMESH_REQUIRE_BROWSER=1, as in CI, which
# make that a failure). Then the Python package's tests
# (scripts/test-python.sh: pip install . into a virtual environment, then
# pytest). Arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
# The mesh page's test (tests/page.rs) drives headless Chromium over WebDriver.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if ((${#need[@]})); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing ${need[*]} for the network and browser tests"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "note: ${need[*]} missing, and installing needs root and apt-get; the tests that need them will skip" >&2
    fi
fi
cargo test "$@"
bash scripts/test-python.sh
