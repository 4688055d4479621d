#!/usr/bin/env bash
# Cloud TPU VM pod slice: run the same command on every worker; JAX discovers the cluster itself.
#   launch/tpu_vm.sh TPU_NAME ZONE train --stage il --config configs/base.py --workdir gs://bucket/run
set -euo pipefail
if [ $# -lt 3 ]; then echo "usage: $0 TPU_NAME ZONE IRLVLA_ARGS..." >&2; exit 2; fi
tpu=$1; zone=$2; shift 2
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all \
  --command "cd ~/irlvla-jax && IRLVLA_DISTRIBUTED=1 irlvla $*"
