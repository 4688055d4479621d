#!/usr/bin/env bash
# Run one irlvla command as N local JAX processes (a multi-host run on one machine).
#   launch/local.sh N irlvla train --stage il --config configs/tiny.py --workdir runs/x
# Each process gets IRLVLA_COORDINATOR / IRLVLA_NUM_PROCESSES / IRLVLA_PROCESS_ID (read by
# irlvla_jax/train/mesh.py, which calls jax.distributed.initialize). On CPU, each process can expose
# several simulated devices with XLA_FLAGS=--xla_force_host_platform_device_count=K.
set -euo pipefail
if [ $# -lt 2 ]; then echo "usage: $0 NUM_PROCESSES COMMAND..." >&2; exit 2; fi
n=$1; shift
port=${IRLVLA_PORT:-$((20000 + RANDOM % 20000))}
mkdir -p "${IRLVLA_LOGDIR:-runs/launch_logs}"
pids=()
for ((i = 0; i < n; i++)); do
  IRLVLA_COORDINATOR="127.0.0.1:${port}" IRLVLA_NUM_PROCESSES="$n" IRLVLA_PROCESS_ID="$i" \
    "$@" > "${IRLVLA_LOGDIR:-runs/launch_logs}/process_${i}.log" 2>&1 &
  pids+=($!)
done
rc=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then echo "process $i failed (log: ${IRLVLA_LOGDIR:-runs/launch_logs}/process_${i}.log)" >&2; rc=1; fi
done
exit $rc
