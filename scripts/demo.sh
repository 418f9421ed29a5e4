#!/usr/bin/env bash
# The local multi-peer demo: an admin and three worker peers run as separate
# processes on 127.0.0.1, the tutorial's workload (examples/tutorial.toml) is
# submitted to them, and a table shows which worker won which task and why.
#
#   scripts/demo.sh                               # debug build (the default)
#   PROFILE=release scripts/demo.sh               # optimised build (slow to build)
#   TASKMESH_BIN=path/to/taskmesh scripts/demo.sh # use this binary, build nothing
#   KEEP_LOGS=1 scripts/demo.sh                   # keep the logs after a success
#   DEMO_PARSER=jq scripts/demo.sh                # force jq instead of python3
#   scripts/demo.sh --http 8080 [--metrics 9464]  # the admin serves the live mesh
#                                                 # page (and metrics) on 127.0.0.1;
#                                                 # the mesh stays up until Ctrl-C
#
# Exits non-zero if anything unexpected happened: a task other than the
# difficulty-10 one not completed, the difficulty-10 one not failed for want
# of a capable worker, a winner less skilled than its task, a task run more
# than once. The logs are kept and their place printed on any failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

HTTP="" METRICS=""
while [ $# -gt 0 ]; do
    case $1 in
    --http) HTTP=${2:?--http needs a port}; shift 2 ;;
    --metrics) METRICS=${2:?--metrics needs a port}; shift 2 ;;
    *) printf 'demo: unknown argument %s (see the top of %s)\n' "$1" "$0" >&2; exit 2 ;;
    esac
done

PROFILE=${PROFILE:-debug}
TASKS=examples/tutorial.toml
HARD=10 # the difficulty no worker is skilled enough for
WORKERS=(Junior:worker:3 Intermediate:worker:6 Senior:worker:9)
STARTED=$(date +%s%N)

LOGS=""   # made once there is something to log
PIDS=()   # every long-running process we started
declare -A NAME_OF # peer name by pid, for messages
FG_PID="" # the short-lived command we are waiting for, if any

# Progress, stamped with the time since the start.
say() {
    local ms=$((($(date +%s%N) - STARTED) / 1000000))
    printf '[%2d.%ds] %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*"
}
fail() {
    printf 'demo: %s\n' "$*" >&2
    exit 1
}

# Stops exactly the processes this script started: TERM, a bounded wait,
# then KILL for any that linger; reaps them all.
stop_all() {
    local pid alive
    for pid in $FG_PID "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for _ in $(seq 50); do
        alive=0
        for pid in $FG_PID "${PIDS[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then alive=1; fi
        done
        if [ "$alive" = 0 ]; then break; fi
        sleep 0.1
    done
    for pid in $FG_PID "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
    FG_PID=""
}

on_exit() {
    local rc=$?
    trap "" INT TERM # a second Ctrl-C must not cut the clean-up short
    trap - EXIT
    stop_all
    if [ -n "$LOGS" ] && [ "$rc" -ne 0 ]; then
        printf 'demo: FAILED (exit %s); logs are in %s\n' "$rc" "$LOGS" >&2
    elif [ -n "$LOGS" ] && [ -n "${KEEP_LOGS:-}" ]; then
        say "logs are in $LOGS"
    elif [ -n "$LOGS" ]; then
        rm -rf "$LOGS"
    fi
    exit "$rc"
}
trap on_exit EXIT
# While the mesh stays up for its page (--http), Ctrl-C is how it ends.
trap '[ -n "${STAYING:-}" ] && exit 0; printf "\ndemo: interrupted\n" >&2; exit 130' INT
trap '[ -n "${STAYING:-}" ] && exit 0; printf "demo: terminated\n" >&2; exit 143' TERM

# Starts one peer: start_node NAME ARGS...; stdout to NAME.out, logs to NAME.log.
start_node() {
    local name=$1
    shift
    "$BIN" node --listen /ip4/127.0.0.1/tcp/0 --no-mdns --grace 1 --psk "$LOGS/mesh.key" "$@" \
        >"$LOGS/$name.out" 2>"$LOGS/$name.log" &
    PIDS+=("$!")
    NAME_OF[$!]=$name
}

# Runs a client command against the admin: client OUT ERR SUBCOMMAND ARGS...
# In the background, waited for, so that a signal reaches our trap at once
# instead of after the command ends. Returns the command's exit code.
client() {
    local out=$1 err=$2 rc=0
    shift 2
    "$BIN" "$@" --join "$ADDR" --no-mdns --psk "$LOGS/mesh.key" --admin-wait 10 >"$out" 2>"$err" &
    FG_PID=$!
    wait "$FG_PID" || rc=$?
    FG_PID=""
    return "$rc"
}

# --- the binary --------------------------------------------------------------
if [ -n "${TASKMESH_BIN:-}" ]; then
    BIN=$TASKMESH_BIN
else
    case $PROFILE in
        debug | dev) profile_args=() dir=debug ;;
        release) profile_args=(--release) dir=release ;;
        *) profile_args=(--profile "$PROFILE") dir=$PROFILE ;;
    esac
    say "building taskmesh ($PROFILE) if needed..."
    # In the foreground, so that Ctrl-C reaches cargo and its rustc jobs.
    cargo build --quiet "${profile_args[@]}" --bin taskmesh || fail "cargo build failed"
    BIN=${CARGO_TARGET_DIR:-target}/$dir/taskmesh
fi
[ -x "$BIN" ] || fail "no taskmesh binary at $BIN"
# Absolute, so that the commands it prints work from any directory.
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

if [ "${DEMO_PARSER:-}" != jq ] && command -v python3 >/dev/null; then
    PARSER=python3
elif command -v jq >/dev/null; then
    PARSER=jq
else
    fail "need python3 or jq to read the results"
fi

# --- the peers ---------------------------------------------------------------
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/taskmesh-demo.XXXXXX")
# A private mesh: every peer and client has the mesh key; nothing else on
# this machine can connect to it.
"$BIN" keygen "$LOGS/mesh.key" >/dev/null || fail "taskmesh keygen failed"
observe=()
[ -z "$HTTP" ] || observe+=(--http "$HTTP")
[ -z "$METRICS" ] || observe+=(--metrics "$METRICS")
start_node admin --seed 1 --admin-priority 200 --no-worker-timeout 2 "${observe[@]}"
ADMIN_PID=${PIDS[0]}
ADDR=""
for _ in $(seq 100); do
    ADDR=$(sed -n 's/^listening on //p' "$LOGS/admin.out" 2>/dev/null | head -n 1 || true)
    if [ -n "$ADDR" ]; then break; fi
    kill -0 "$ADMIN_PID" 2>/dev/null || fail "the admin node exited early: $(tail -n 5 "$LOGS/admin.log")"
    sleep 0.1
done
[ -n "$ADDR" ] || fail "the admin node printed no 'listening on' line within 10 s"
say "admin  $(sed -n 's/^peer id: //p' "$LOGS/admin.out")  at $ADDR"
page=$(sed -n 's/^mesh page: //p' "$LOGS/admin.out")
metrics=$(sed -n 's/^metrics: //p' "$LOGS/admin.out")
[ -z "$page" ] || say "mesh page: $page"
[ -z "$metrics" ] || say "metrics: $metrics"

# Worker peers are not admin-eligible: the admin alone keeps the ledger, as
# a small demo needs (three eligible peers would make three voters).
seed=2
for spec in "${WORKERS[@]}"; do
    start_node "${spec%%:*}" --seed "$seed" --join "$ADDR" --worker "$spec" --no-admin
    seed=$((seed + 1))
done

# Wait until the admin lists all three workers (each poll waits for an admin).
want=${#WORKERS[@]}
have=0
for _ in $(seq 40); do
    if client "$LOGS/workers.jsonl" "$LOGS/workers.err" workers --json; then
        have=$(grep -c . "$LOGS/workers.jsonl" || true)
        if [ "$have" -ge "$want" ]; then break; fi
    fi
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || fail "peer ${NAME_OF[$pid]} exited early: $(tail -n 3 "$LOGS/${NAME_OF[$pid]}.log")"
    done
    sleep 0.25
done
[ "$have" -ge "$want" ] || fail "only $have of $want workers registered: $(tail -n 3 "$LOGS/workers.err")"
say "workers registered: $(sed -n 's/.*"name":"\([^"]*\)".*"skill":\([0-9]*\).*/\1(\2)/p' "$LOGS/workers.jsonl" | paste -sd ' ')"

# --- the workload ------------------------------------------------------------
expected=$(grep -c '^\[\[task\]\]' "$TASKS")
say "submitting $expected tasks from $TASKS..."
rc=0
client "$LOGS/results.jsonl" "$LOGS/submit.err" submit "$TASKS" --json --wait-workers "$want" --timeout 30 || rc=$?
# submit exits 1 when any task failed, and the difficulty-10 one must fail.
[ "$rc" -le 1 ] || fail "taskmesh submit exited with $rc: $(tail -n 3 "$LOGS/submit.err")"
got=$(grep -c . "$LOGS/results.jsonl" || true)
[ "$got" = "$expected" ] || fail "expected $expected results, got $got: $(tail -n 3 "$LOGS/submit.err")"

# --- the table and the checks -------------------------------------------------
report_python3() {
    python3 - "$LOGS/results.jsonl" "$LOGS/workers.jsonl" "$HARD" <<'PY'
import json, sys

results = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
skills = {w["name"]: w["skill"] for w in (json.loads(l) for l in open(sys.argv[2]) if l.strip())}
hard = int(sys.argv[3])

row = "{:<20} {:>4}  {:<13} {:<36} {:<9} {:>7}"
print(row.format("TASK", "DIFF", "WINNER", "BIDS", "STATUS", "TIME"))
for r in results:
    bids = ",".join(f"{b['worker']}({b['skill']})" for b in r["bids"]) or "-"
    print(row.format(r["name"], r["difficulty"], r["worker"] or "-", bids, r["status"], f"{r['elapsed_ms']}ms"))
    print(" " * 27 + (f"error: {r['error']}" if r["error"] else f"why: {r['reason'] or '-'}"))

problems = []
for r in results:
    name, diff = r["name"], r["difficulty"]
    if diff == hard:
        if r["status"] != "failed" or "no capable worker" not in (r["error"] or ""):
            problems.append(f"{name}: expected to fail with 'no capable worker', got {r['status']} {r['error']}")
    elif r["status"] != "completed":
        problems.append(f"{name}: {r['status']}: {r['error']}")
    elif r["attempts"] != 1:
        problems.append(f"{name}: ran {r['attempts']} times")
    elif [b["worker"] for b in r["bids"] if b["verdict"] == "won"] != [r["worker"]]:
        problems.append(f"{name}: the verdicts of the bids do not name {r['worker']} alone as the winner: {r['bids']}")
    elif any(b["worker"] not in r["reason"] for b in r["bids"] if b["verdict"] != "won"):
        problems.append(f"{name}: the reason does not name every other bidder: {r['reason']}")
    elif skills.get(r["worker"], -1) < diff:
        problems.append(f"{name}: winner {r['worker']} (skill {skills.get(r['worker'])}) < difficulty {diff}")
for p in problems:
    print(f"demo: unexpected: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
PY
}

report_jq() {
    local skills
    skills=$(jq -sc 'map({key: .name, value: .skill}) | from_entries' "$LOGS/workers.jsonl")
    printf '%-20s %4s  %-13s %-36s %-9s %7s\n' TASK DIFF WINNER BIDS STATUS TIME
    jq -r --argjson s "$skills" '[.name, .difficulty, (.worker // "-"),
            ((.bids | map("\(.worker)(\(.skill))") | join(",")) | if . == "" then "-" else . end),
            .status, "\(.elapsed_ms)ms",
            (if .error then "error: \(.error)" else "why: \(.reason // "-")" end)] | @tsv' "$LOGS/results.jsonl" |
        while IFS=$'\t' read -r name diff winner bids status time note; do
            printf '%-20s %4s  %-13s %-36s %-9s %7s\n%27s%s\n' \
                "$name" "$diff" "$winner" "$bids" "$status" "$time" "" "$note"
        done
    jq -r --argjson s "$skills" --argjson hard "$HARD" '
        if .difficulty == $hard then
            if .status != "failed" or ((.error // "") | contains("no capable worker") | not)
            then "\(.name): expected to fail with no capable worker, got \(.status) \(.error)" else empty end
        elif .status != "completed" then "\(.name): \(.status): \(.error)"
        elif .attempts != 1 then "\(.name): ran \(.attempts) times"
        elif ([.bids[] | select(.verdict == "won") | .worker] != [.worker])
        then "\(.name): the verdicts of the bids do not name \(.worker) alone as the winner"
        elif (. as $t | any(.bids[] | select(.verdict != "won"); (.worker as $w | $t.reason | contains($w)) | not))
        then "\(.name): the reason does not name every other bidder: \(.reason)"
        elif ($s[.worker] // -1) < .difficulty
        then "\(.name): winner \(.worker) (skill \($s[.worker])) < difficulty \(.difficulty)"
        else empty end' "$LOGS/results.jsonl" >"$LOGS/problems.txt"
    if [ -s "$LOGS/problems.txt" ]; then
        sed 's/^/demo: unexpected: /' "$LOGS/problems.txt" >&2
        return 1
    fi
}

echo
"report_$PARSER" || fail "the results are not what the tutorial expects"
echo
say "all as expected (results read with $PARSER)"
if [ -n "$HTTP$METRICS" ]; then
    STAYING=1
    say "the mesh stays up${page:+ for the page at $page}${page:+${metrics:+ and}}${metrics:+ for the metrics at $metrics}: Ctrl-C to stop"
    say "submit more to it with: $BIN submit $PWD/examples/pipeline.toml --join $ADDR --no-mdns --psk $LOGS/mesh.key"
    while kill -0 "$ADMIN_PID" 2>/dev/null; do
        sleep 1 &
        FG_PID=$!
        wait "$FG_PID" || true
    done
fi
