#!/usr/bin/env bash
# The pure core (scheduler, consensus, client-side calls) must stay deterministic: no runtime,
# no network, no clock, no randomness. Fails listing any offending line.
set -euo pipefail
cd "$(dirname "$0")/.."
pure=(src/scheduler src/consensus src/calls.rs)
pattern='tokio|libp2p|Instant::now|SystemTime::now|Uuid::new_v4|\brand\b|rand::'
if grep -rnE "$pattern" "${pure[@]}"; then
    echo "error: the pure modules (${pure[*]}) must not use tokio, libp2p, clocks or randomness" >&2
    exit 1
fi
echo "pure core check: ok (${pure[*]})"
