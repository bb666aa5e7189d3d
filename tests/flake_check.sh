#!/usr/bin/env bash
# The flakiness check: the whole suite N times (default 10), each run beside a CPU-heavy neighbour.
#
#   tests/flake_check.sh [N] [pytest args...]      (or: make flake-check N=10 ARGS="...")
#
# NEIGHBOUR=burn (default) runs BURNERS busy-loop processes (default: one per core); NEIGHBOUR=suite runs a second copy of the
# same suite in a loop. Prints one line per run (pass/fail, seconds) and exits 1 if any run failed. Each
# run's pytest output is kept in $FLAKE_LOGS (default $TMPDIR/crowdboxes-flake-check/run-<i>.log); the neighbour's in
# neighbour-<i>.log. pytest args default to the whole suite; give paths or -k to check a subset.
set -u

cd "$(dirname "$0")/.."
N=${1:-10}
shift $(( $# > 0 ? 1 : 0 ))
PY=${PY:-.venv/bin/python}
NEIGHBOUR=${NEIGHBOUR:-burn}
LOGS=${FLAKE_LOGS:-${TMPDIR:-/tmp}/crowdboxes-flake-check}
CORES=$(nproc 2>/dev/null || echo 2)
BURNERS=${BURNERS:-$CORES}
mkdir -p "$LOGS"

neighbour_pids=()

start_neighbour() {  # $1: run number
    neighbour_pids=()
    if [ "$NEIGHBOUR" = suite ]; then
        # a second copy of the suite, restarted until this run ends, in its own process group (so that
        # stopping it also stops the servers it started) and its own temp folder
        setsid bash -c 'while :; do "$0" -m pytest -q -p no:cacheprovider --basetemp "$1" "${@:2}"; done' \
            "$PY" "$LOGS/neighbour-tmp" "${@:2}" >"$LOGS/neighbour-$1.log" 2>&1 &
        neighbour_pids+=(-$!)
    else
        for _ in $(seq "$BURNERS"); do
            "$PY" -c "while True: pass" &
            neighbour_pids+=($!)
        done
    fi
}

stop_neighbour() {
    # a negative id is the suite neighbour's process group
    [ ${#neighbour_pids[@]} -eq 0 ] && return
    kill -TERM -- "${neighbour_pids[@]}" 2>/dev/null
    wait 2>/dev/null
    neighbour_pids=()
}

trap 'stop_neighbour; exit 130' INT TERM

failed=0
for i in $(seq "$N"); do
    start_neighbour "$i" "$@"
    started=$(date +%s)
    # a temp folder of its own per run: tests seeded by a file's path (file:// URLs) draw new coins each run,
    # as on CI, and a failed run's files stay for reading
    "$PY" -m pytest -q -p no:cacheprovider --basetemp "$LOGS/run-$i-tmp" "$@" >"$LOGS/run-$i.log" 2>&1
    code=$?
    seconds=$(( $(date +%s) - started ))
    stop_neighbour
    summary=$(tail -n 1 "$LOGS/run-$i.log")
    if [ "$code" -eq 0 ]; then
        rm -rf "$LOGS/run-$i-tmp"
        echo "run $i/$N: pass ${seconds} s ($summary)"
    else
        failed=$((failed + 1))
        echo "run $i/$N: FAIL ${seconds} s (exit $code; $summary; log $LOGS/run-$i.log, files $LOGS/run-$i-tmp)"
    fi
done
echo "flake check: $((N - failed)) of $N runs passed (neighbour: $NEIGHBOUR)"
[ "$failed" -eq 0 ]
