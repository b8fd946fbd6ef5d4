#!/bin/sh
# Runs node-problem-detector ("$@") and ends when it ends, or when it no longer holds the kernel log
# open: NPD can lose its /dev/kmsg descriptor (the device re-created, the read failing) and keep
# running, blind to the Neuron errors it is there for. Exiting lets the kubelet restart the container.
#   KMSG_PATH        the kernel log device NPD reads (default /dev/kmsg)
#   CHECK_INTERVAL_S seconds between checks (default 5)
set -u
kmsg=${KMSG_PATH:-/dev/kmsg}
interval=${CHECK_INTERVAL_S:-5}

"$@" &
npd=$!
trap 'kill -TERM "$npd" 2>/dev/null; wait "$npd"; exit 0' TERM INT

holds_kmsg() {
  for fd in /proc/"$npd"/fd/*; do
    [ "$(readlink "$fd" 2>/dev/null)" = "$kmsg" ] && return 0
  done
  return 1
}

# NPD opens the log shortly after it starts; give it one interval before the first check.
sleep "$interval" & wait $!
while kill -0 "$npd" 2>/dev/null; do
  if ! holds_kmsg; then
    echo "npd-watchdog: node-problem-detector (pid $npd) no longer holds $kmsg open; exiting so the kubelet restarts it" >&2
    kill -TERM "$npd" 2>/dev/null
    wait "$npd"
    exit 1
  fi
  sleep "$interval" & wait $!
done
wait "$npd"
status=$?
echo "npd-watchdog: node-problem-detector exited with status $status" >&2
exit "$status"
