#!/usr/bin/env bash
# Run one irlvla command as N local JAX processes (a multi-host run on one machine).
#   launch/local.sh 2 irlvla train --stage il --config configs/tiny.py --workdir runs/x
#   XLA_FLAGS=--xla_force_host_platform_device_count=4 launch/local.sh 2 irlvla train ...   (2 x 4 CPU devices)
# Each process gets IRLVLA_COORDINATOR / IRLVLA_NUM_PROCESSES / IRLVLA_PROCESS_ID (read by
# irlvla_jax/train/mesh.py, the one place that reads the cluster) and logs to $IRLVLA_LOGDIR/process_<i>.log.
# When a process fails, the launcher names it at once; the others stop by themselves within the
# jax.distributed heartbeat bound (IRLVLA_HEARTBEAT_TIMEOUT, 30 s) and are killed after twice that.
set -uo pipefail
if [ $# -lt 2 ]; then echo "usage: $0 NUM_PROCESSES COMMAND..." >&2; exit 2; fi
n=$1; shift
port=${IRLVLA_PORT:-$((20000 + RANDOM % 20000))}
logdir=${IRLVLA_LOGDIR:-runs/launch_logs}
grace=$((2 * ${IRLVLA_HEARTBEAT_TIMEOUT:-30}))
mkdir -p "$logdir"
declare -A index
for ((i = 0; i < n; i++)); do
  IRLVLA_COORDINATOR="127.0.0.1:${port}" IRLVLA_NUM_PROCESSES="$n" IRLVLA_PROCESS_ID="$i" \
    "$@" > "$logdir/process_${i}.log" 2>&1 &
  index[$!]=$i
done
rc=0; failed_at=0
while [ "${#index[@]}" -gt 0 ]; do
  for pid in "${!index[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid"; status=$?
      if [ "$status" -ne 0 ]; then
        echo "process ${index[$pid]} failed with exit code $status (log: $logdir/process_${index[$pid]}.log)" >&2
        rc=1; [ "$failed_at" -eq 0 ] && failed_at=$SECONDS
      fi
      unset "index[$pid]"
    fi
  done
  if [ "$failed_at" -ne 0 ] && [ $((SECONDS - failed_at)) -ge "$grace" ]; then
    for pid in "${!index[@]}"; do
      echo "process ${index[$pid]} still running ${grace} s after a failure: killed" >&2
      kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; unset "index[$pid]"
    done
  fi
  [ "${#index[@]}" -gt 0 ] && sleep 1
done
exit $rc
