#!/usr/bin/env bash
# Every test: the README's test command. The network-namespace tests
# (tests/lan.rs) need iproute2 and iptables; where they are missing and this
# runs as root with apt-get, they are installed from the distribution's
# packages first. Without them those tests say so and skip (unless
# TASKMESH_REQUIRE_LAN=1, as in CI, which makes that a failure). Arguments
# go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
if ((${#need[@]})); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing ${need[*]} for the network tests"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "note: ${need[*]} missing, and installing needs root and apt-get; the network-namespace tests will skip" >&2
    fi
fi
exec cargo test "$@"
