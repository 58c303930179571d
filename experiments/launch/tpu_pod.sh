#!/usr/bin/env bash
# Train on every worker of a Cloud TPU VM slice at once: install the package's wheel on all workers,
# copy the data from a bucket to each worker's disk, and start `instagan train` with checkpoints on a
# bucket (orbax writes gs:// itself through gcsfs). jax finds the other workers by itself.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
source "$HERE/common.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") --tpu NAME --zone ZONE --data gs://BUCKET/DATA --checkpoints gs://BUCKET/RUN
                   [--project ID] [--config NAME] [--workdir DIR] [--data-key KEY] [--wheel FILE]
                   [--python NAME] [--dry-run] [-- more instagan train options]

  --tpu NAME          the TPU VM (slice) name
  --zone ZONE         its zone, e.g. us-central2-b
  --data URL          a bucket folder copied to ~/instagan_data on every worker: a TFDS data_dir
                      (shp2gir_coco), or a data root with --data-key data.options.root (folder configs)
  --checkpoints URL   where orbax writes the checkpoints, e.g. gs://my-bucket/runs/shp2gir
  --project ID        gcloud project (default: gcloud's configured one)
  --config NAME       instagan config (default: shp2gir_coco)
  --workdir DIR       each worker's workdir for metrics and samples, written by worker 0 (default: runs/CONFIG)
  --data-key KEY      config key set to the workers' copy of --data (default: data.options.data_dir)
  --wheel FILE        the wheel to install (default: build it from this checkout with python -m build)
  --python NAME       the workers' Python (3.11+) for the venv ~/instagan_venv (default: python3)
  --dry-run           print the commands, run nothing
USAGE
}

TPU="" ZONE="" DATA="" CHECKPOINTS="" PROJECT="" CONFIG="shp2gir_coco" WORKDIR="" DATA_KEY="data.options.data_dir" WHEEL="" PYTHON="python3"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tpu) need_value "$@"; TPU="$2"; shift 2 ;;
    --zone) need_value "$@"; ZONE="$2"; shift 2 ;;
    --data) need_value "$@"; DATA="$2"; shift 2 ;;
    --checkpoints) need_value "$@"; CHECKPOINTS="$2"; shift 2 ;;
    --project) need_value "$@"; PROJECT="$2"; shift 2 ;;
    --config) need_value "$@"; CONFIG="$2"; shift 2 ;;
    --workdir) need_value "$@"; WORKDIR="$2"; shift 2 ;;
    --data-key) need_value "$@"; DATA_KEY="$2"; shift 2 ;;
    --wheel) need_value "$@"; WHEEL="$2"; shift 2 ;;
    --python) need_value "$@"; PYTHON="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) usage >&2; die "unknown option $1" ;;
  esac
done
for option in tpu zone data checkpoints; do
  variable="${option^^}"
  [[ -n "${!variable}" ]] || { usage >&2; die "--$option is required"; }
done
[[ "$DATA" == gs://* ]] || die "--data must be a gs:// folder, got $DATA"
[[ "$CHECKPOINTS" == gs://* ]] || die "--checkpoints must be a gs:// folder (all workers write there), got $CHECKPOINTS"
WORKDIR="${WORKDIR:-runs/$CONFIG}"
require_commands gcloud
GCLOUD_TARGET=(--worker=all "--zone=$ZONE")
[[ -n "$PROJECT" ]] && GCLOUD_TARGET+=("--project=$PROJECT")

if [[ -z "$WHEEL" ]]; then
  version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml")"
  WHEEL="$ROOT/dist/instagan_jax-$version-py3-none-any.whl"
  require_commands python3
  [[ "$DRY_RUN" == 1 ]] || python3 -c "import build" 2>/dev/null \
    || die "building the wheel needs the 'build' package: pip install build (or give --wheel FILE)"
  run python3 -m build --wheel --outdir "$ROOT/dist" "$ROOT"
elif [[ ! -f "$WHEEL" ]]; then
  die "no wheel $WHEEL"
fi
REMOTE_WHEEL="/tmp/$(basename "$WHEEL")"
run gcloud compute tpus tpu-vm scp "$WHEEL" "$TPU:$REMOTE_WHEEL" "${GCLOUD_TARGET[@]}"

VENV='$HOME/instagan_venv'
train=(instagan_venv_placeholder/bin/python -m instagan_jax.cli train --config "$CONFIG" --workdir "$WORKDIR" --set train.distributed=true
       --set "log.checkpoint_dir=$CHECKPOINTS" "$@")
printf -v train_line ' %q' "${train[@]}"
train_line="${train_line/instagan_venv_placeholder/$VENV}"
printf -v copy_line ' %q' gcloud storage rsync --recursive "$DATA" instagan_data_placeholder
copy_line="${copy_line/instagan_data_placeholder/\$HOME/instagan_data}"
REMOTE="set -e; $(printf '%q' "$PYTHON") -m venv $VENV;"
REMOTE+=" $VENV/bin/pip install --quiet --upgrade \"jax[tpu]\" gcsfs $(printf '%q' "$REMOTE_WHEEL");"
REMOTE+=" mkdir -p \$HOME/instagan_data;$copy_line;$train_line --set $(printf '%q' "$DATA_KEY")=\$HOME/instagan_data"
run gcloud compute tpus tpu-vm ssh "$TPU" "${GCLOUD_TARGET[@]}" "--command=$REMOTE"
