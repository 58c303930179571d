#!/usr/bin/env bash
# Train on GPUs: all GPUs of one host, a SLURM job over several hosts, or one process of a
# multi-host run started by hand. Every mode ends in `instagan train`; `train.batch_size` is the
# global batch and must divide evenly over all GPUs.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/common.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") local   [--gpus N] [--dry-run] -- TRAIN_OPTIONS
       $(basename "$0") slurm   --nodes N --gpus-per-node G [--partition P] [--time HH:MM:SS] [--dry-run] -- TRAIN_OPTIONS
       $(basename "$0") process --coordinator HOST:PORT --num-processes N --process-id I [--dry-run] -- TRAIN_OPTIONS

  local     one process on this host using its first N GPUs (default: all it sees)
  slurm     srun one process per GPU on N nodes; jax reads the job's layout from SLURM itself
  process   one process of N, started by you on each host (process 0's host and a free port as the
            coordinator); the same as JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID

TRAIN_OPTIONS go to 'instagan train' as they are, e.g.
  -- --config shp2gir_coco --workdir /shared/runs/shp2gir --set train.batch_size=8
In the multi-host modes the workdir must be on storage all hosts share (or use
--set log.checkpoint_dir=gs://... for the checkpoints). \$INSTAGAN names the command (default: instagan).
USAGE
}

[[ $# -gt 0 ]] || { usage >&2; die "give a mode: local, slurm or process"; }
MODE="$1"
shift
case "$MODE" in
  local|slurm|process) ;;
  -h|--help) usage; exit 0 ;;
  *) usage >&2; die "unknown mode $MODE (local, slurm or process)" ;;
esac

# Die unless option $1 belongs to the mode.
belongs() {
  case "$MODE:$1" in
    local:--gpus|slurm:--nodes|slurm:--gpus-per-node|slurm:--partition|slurm:--time) ;;
    process:--coordinator|process:--num-processes|process:--process-id) ;;
    *) die "$1 is not an option of mode $MODE" ;;
  esac
}

GPUS="" NODES="" GPUS_PER_NODE="" PARTITION="" TIME="" COORDINATOR="" NUM_PROCESSES="" PROCESS_ID=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --gpus) belongs "$1"; need_value "$@"; GPUS="$2"; shift 2 ;;
    --nodes) belongs "$1"; need_value "$@"; NODES="$2"; shift 2 ;;
    --gpus-per-node) belongs "$1"; need_value "$@"; GPUS_PER_NODE="$2"; shift 2 ;;
    --partition) belongs "$1"; need_value "$@"; PARTITION="$2"; shift 2 ;;
    --time) belongs "$1"; need_value "$@"; TIME="$2"; shift 2 ;;
    --coordinator) belongs "$1"; need_value "$@"; COORDINATOR="$2"; shift 2 ;;
    --num-processes) belongs "$1"; need_value "$@"; NUM_PROCESSES="$2"; shift 2 ;;
    --process-id) belongs "$1"; need_value "$@"; PROCESS_ID="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) usage >&2; die "unknown option $1 for mode $MODE" ;;
  esac
done
[[ $# -gt 0 ]] || die "no training options after '--' (at least --workdir DIR)"

positive() {  # die unless $2 (named by $1) is a positive integer
  [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '${2:-nothing}'"
}

read -r -a INSTAGAN_COMMAND <<< "${INSTAGAN:-instagan}"
TRAIN=("${INSTAGAN_COMMAND[@]}" train)
case "$MODE" in
  local)
    require_commands "${INSTAGAN_COMMAND[0]}"
    if [[ -n "$GPUS" ]]; then
      positive --gpus "$GPUS"
      run env "CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((GPUS - 1)))" "${TRAIN[@]}" "$@"
    else
      run "${TRAIN[@]}" "$@"
    fi
    ;;
  slurm)
    positive --nodes "$NODES"
    positive --gpus-per-node "$GPUS_PER_NODE"
    require_commands srun
    srun_options=("--nodes=$NODES" "--ntasks-per-node=$GPUS_PER_NODE" "--gpus-per-node=$GPUS_PER_NODE")
    [[ -n "$PARTITION" ]] && srun_options+=("--partition=$PARTITION")
    [[ -n "$TIME" ]] && srun_options+=("--time=$TIME")
    run srun "${srun_options[@]}" "${TRAIN[@]}" "$@" --set train.distributed=true
    ;;
  process)
    [[ -n "$COORDINATOR" ]] || die "--coordinator HOST:PORT is required (process 0's host and a free port)"
    positive --num-processes "$NUM_PROCESSES"
    [[ "$PROCESS_ID" =~ ^[0-9]+$ && "$PROCESS_ID" -lt "$NUM_PROCESSES" ]] \
      || die "--process-id must be 0 to $((NUM_PROCESSES - 1)), got '${PROCESS_ID:-nothing}'"
    require_commands "${INSTAGAN_COMMAND[0]}"
    run env "JAX_COORDINATOR_ADDRESS=$COORDINATOR" "JAX_NUM_PROCESSES=$NUM_PROCESSES" "JAX_PROCESS_ID=$PROCESS_ID" \
      "${TRAIN[@]}" "$@" --set train.distributed=true
    ;;
esac
