#!/usr/bin/env bash
# The suite under CPU pressure: one busy loop per core, then the whole suite N times in a row
# (the same pytest as `make test`), stopping at the first failed run. A flaky test is a defect:
# this is how to look for one on purpose (`make stress`, STRESS_RUNS=N).
#
#   tests/stress.sh [N] [pytest args...]     e.g. tests/stress.sh 20 tests/state -p no:randomly
#
# Each run appends one row to $STRESS_LOG (tests/STRESS_LOG.md: date, commit, run, result,
# duration, failed tests); its whole output goes to $STRESS_DIR/run-<k>.txt (.stress/). The
# busy loops are killed on exit, however the script ends (Ctrl-C included).
set -u

cd "$(dirname "$0")/.."
RUNS=${1:-${STRESS_RUNS:-10}}
shift $(($# > 0 ? 1 : 0))
PYTEST=${PYTEST:-.venv/bin/pytest}
LOG=${STRESS_LOG:-tests/STRESS_LOG.md}
OUT=${STRESS_DIR:-.stress}
BUSY=${STRESS_BUSY:-$(python3 -c 'import os; print(os.cpu_count() or 1)')}

case $RUNS in '' | *[!0-9]*) echo "usage: $0 [N runs] [pytest args...]" >&2; exit 2 ;; esac
[ -x "$PYTEST" ] || { echo "$PYTEST not found: run make install first" >&2; exit 2; }
mkdir -p "$OUT"

loops=()
stop_loops() {
    for pid in "${loops[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${loops[@]}"; do wait "$pid" 2>/dev/null; done
    loops=()
}
trap stop_loops EXIT
trap 'exit 130' INT TERM
for _ in $(seq "$BUSY"); do
    python3 -c 'while True: pass' &
    loops+=("$!")
done

commit=${STRESS_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo "?")}
if [ -z "${STRESS_COMMIT:-}" ] && ! git diff --quiet HEAD -- . ":(exclude)$LOG" 2>/dev/null; then
    commit="$commit+changes"  # uncommitted edits (or not a git checkout)
fi
what=${*:-the whole suite}
echo "stress: $RUNS run(s) of $what with $BUSY busy loop(s) (pids ${loops[*]}), commit $commit"
if ! grep -q '^| date (UTC) |' "$LOG" 2>/dev/null; then
    [ -s "$LOG" ] && printf '\n' >>"$LOG"
    printf '| date (UTC) | commit | run | busy loops | what | result | duration | failed |\n' >>"$LOG"
    printf '| --- | --- | --- | --- | --- | --- | --- | --- |\n' >>"$LOG"
fi

passed=0
for k in $(seq "$RUNS"); do
    start=$(date +%s)
    stamp=$(date -u +'%Y-%m-%d %H:%M')
    "$PYTEST" -q "$@" >"$OUT/run-$k.txt" 2>&1
    rc=$?
    secs=$(($(date +%s) - start))
    failed=$(grep -E '^(FAILED|ERROR) ' "$OUT/run-$k.txt" | cut -d' ' -f2 | paste -sd' ' -)
    result=$([ $rc -eq 0 ] && echo pass || echo "FAIL (exit $rc)")
    printf '| %s | %s | %d/%d | %d | %s | %s | %d s | %s |\n' \
        "$stamp" "$commit" "$k" "$RUNS" "$BUSY" "$what" "$result" "$secs" "${failed:-}" >>"$LOG"
    echo "run $k/$RUNS: $result in ${secs} s $(tail -n 1 "$OUT/run-$k.txt")"
    if [ $rc -ne 0 ]; then
        echo "stress: run $k failed after $passed passing run(s) in a row; output: $OUT/run-$k.txt"
        exit 1
    fi
    passed=$((passed + 1))
done
echo "stress: $passed of $RUNS run(s) passed in a row"
