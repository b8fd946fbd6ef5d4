#!/usr/bin/env bash
# Runs the test command several times in a row while CPU hogs (`yes >/dev/null`) keep cores busy,
# stopping at the first failure: the tests must not depend on how fast the machine is.
#
#   scripts/test-under-load.sh [--runs N] [--hogs N] [-- COMMAND...]   default: 3 runs, 2 hogs, make test
#
# Each run's output goes to run-<i>.log in $UNDER_LOAD_LOGS (default build/under-load); a line per
# run says its exit status and seconds. The hogs are stopped by their PIDs on any exit.
set -euo pipefail

runs=3
hog_count=2
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=${2:?--runs needs a number}; shift 2 ;;
    --hogs) hog_count=${2:?--hogs needs a number}; shift 2 ;;
    --) shift; break ;;
    *) echo "test-under-load: unknown argument '$1' (expected --runs N, --hogs N, -- COMMAND...)" >&2; exit 2 ;;
  esac
done
for number in "$runs" "$hog_count"; do
  [[ "$number" =~ ^[0-9]+$ ]] || { echo "test-under-load: '$number' is not a whole number" >&2; exit 2; }
done
command=("$@")
[ ${#command[@]} -gt 0 ] || command=(make test)

repo_root=$(cd "$(dirname "$0")/.." && pwd)
log_dir=${UNDER_LOAD_LOGS:-$repo_root/build/under-load}
mkdir -p "$log_dir"

hog_pids=()
stop_hogs() {
  [ ${#hog_pids[@]} -gt 0 ] || return 0
  kill "${hog_pids[@]}" 2>/dev/null || true
  wait "${hog_pids[@]}" 2>/dev/null || true
}
trap stop_hogs EXIT
for _ in $(seq "$hog_count"); do
  yes >/dev/null &
  hog_pids+=($!)
done
echo "test-under-load: $hog_count hogs (PIDs ${hog_pids[*]:-none}); $runs runs of: ${command[*]}"

cd "$repo_root"
total_start=$(date +%s)
for run in $(seq "$runs"); do
  start=$(date +%s)
  status=0
  "${command[@]}" >"$log_dir/run-$run.log" 2>&1 || status=$?
  echo "test-under-load: run $run of $runs: exit $status in $(( $(date +%s) - start )) s (log: $log_dir/run-$run.log)"
  if [ "$status" -ne 0 ]; then
    tail -n 30 "$log_dir/run-$run.log" >&2
    exit "$status"
  fi
done
echo "test-under-load: $runs of $runs passed in $(( $(date +%s) - total_start )) s"
