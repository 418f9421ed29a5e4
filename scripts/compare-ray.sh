#!/usr/bin/env bash
# taskmesh against Ray on W1–W6 of shared/benchmarks.md, in one run (issue 9):
# taskmesh's bench first, then Ray's (benches/ray/workloads.py, same task
# bodies and checks, a local Ray of 3 CPUs), then a markdown table of the
# ratios (benches/ray/ratios.py). Not run by CI.
#
#   scripts/compare-ray.sh                 # 3 runs each; W2 at 1k, 10k and 100k tasks
#   scripts/compare-ray.sh --quick         # a smoke run: 1 run, W2 at 100 and 1k tasks
#   scripts/compare-ray.sh --runs 5        # --runs N and --quick go to both sides
#   TASKMESH_BENCH_BIN=target/release/deps/workloads-<hash> scripts/compare-ray.sh
#                                          # run this bench binary instead of `cargo bench`
#
# The first run makes a virtual environment in target/ray-venv (python3 -m venv)
# and installs benches/ray/requirements.txt (ray==2.60.0, all pinned); it is
# reinstalled when that file changes. The raw JSON lines of both sides and the
# table are kept in target/compare-ray/<timestamp>-{taskmesh,ray}.jsonl and
# <timestamp>-table.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
    echo "usage: scripts/compare-ray.sh [--quick] [--runs N]" >&2
    exit 2
}
opts=()
while (($#)); do
    case $1 in
        --quick) opts+=(--quick) ;;
        --runs) (($# >= 2)) || usage; opts+=(--runs "$2"); shift ;;
        *) usage ;;
    esac
    shift
done
workloads=(W1 W2 W3 W4 W5 W6)

export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ beside benches/ray/*.py
venv=target/ray-venv
req=benches/ray/requirements.txt
if [ ! -x "$venv/bin/python" ]; then
    echo "[compare] making $venv" >&2
    python3 -m venv "$venv"
fi
if ! cmp -s "$req" "$venv/requirements.installed"; then
    echo "[compare] installing $req into $venv" >&2
    "$venv/bin/python" -m pip install -q -r "$req"
    cp "$req" "$venv/requirements.installed"
fi

out=target/compare-ray
stamp=$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
ours="$out/$stamp-taskmesh.jsonl"
ray="$out/$stamp-ray.jsonl"

echo "[compare] taskmesh → $ours" >&2
if [ -n "${TASKMESH_BENCH_BIN:-}" ]; then
    "$TASKMESH_BENCH_BIN" --bench "${opts[@]}" "${workloads[@]}" >"$ours"
else
    cargo bench --bench workloads -- "${opts[@]}" "${workloads[@]}" >"$ours"
fi
echo "[compare] Ray → $ray" >&2
"$venv/bin/python" benches/ray/workloads.py "${opts[@]}" "${workloads[@]}" >"$ray"

echo >&2
"$venv/bin/python" benches/ray/ratios.py "$ours" "$ray" | tee "$out/$stamp-table.md"
