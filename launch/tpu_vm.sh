#!/usr/bin/env bash
# Cloud TPU VM pod slice: run the same command on every worker; JAX discovers the cluster itself
# (IRLVLA_DISTRIBUTED=1 -> jax.distributed.initialize() auto-detection, read in irlvla_jax/train/mesh.py).
#   launch/tpu_vm.sh my-v4-32 us-central2-b train --stage il --config configs/base.py --workdir /mnt/runs/il
# Each worker prints its layout line ("irlvla: process 1/4 on t1v-...-w-1 (auto): 4 local tpu device(s), 16
# in all").
set -euo pipefail
if [ $# -lt 3 ]; then echo "usage: $0 TPU_NAME ZONE IRLVLA_ARGS..." >&2; exit 2; fi
tpu=$1; zone=$2; shift 2
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all \
  --command "cd ~/irlvla-jax && IRLVLA_DISTRIBUTED=1 irlvla $*"
