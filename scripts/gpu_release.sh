#!/usr/bin/env bash
# Train the release model from the committed recipe on a lent GPU, in one device call.
#
# The call has a fixed wall-clock limit and the lease a fixed device time, and a GPU's speed
# is not known before the call, so the script measures first and fits the run to the time
# (on one H200 on 2026-12-04 it chose 117 epochs and the call took 412 of its 540 s: the fit
# is cautious; the bundled model is that run, and the recipe now says 117):
#
#   1. a probe: the whole pipeline (2 epochs of 6,400 training images, full PublicTest
#      validation, save, evaluate) on the GPU, first with the training step replayed as CUDA
#      graphs (train.cuda_graph; GRAPH=0 skips that), and without them if that fails; if
#      both fail, the script stops at once, so that the lease keeps time for a fixed second
#      try (a CPU smoke run goes through the fallback: the CPU refuses graphs);
#   2. the number of epochs that fits in what is left of BUDGET seconds (at most MAX_EPOCHS),
#      from the probe's second epoch (its images/s and validation time), with a margin;
#   3. the committed recipe with that many epochs (--epochs; the cosine schedule spans them);
#   4. the model folder back under $OUT: the weights split in 15 MB parts, the small files
#      in one tar (a call returns at most 8 files), the logs. If the run was cut short, the
#      best checkpoint so far comes back instead of the folder.
#
# Prepare here (the device tool sends the working tree, at most 64 MiB, and ../shared does not
# travel; data/ and runs/ are git-ignored):
#
#   mkdir -p data && tar czf data/fer2013.tgz -C ../shared/data fer2013      # ~53 MB
#   mkdir -p /tmp/bundled && mv src/emotionnet/weights/default/model*.{safetensors,onnx} \
#       /tmp/bundled/     # the weights and both ONNX graphs (76 MB): the tree must stay small
#
# The distilled release (configs/fer2013_resnet18_distilled.toml: the bundled model as teacher,
# its flip_crop probabilities precomputed for the training faces) runs the same way with
# CONFIG=configs/fer2013_resnet18_distilled.toml. The teacher's weights (22 MB) cannot travel
# with the data, so its targets are computed here first, into the recipe's distill_targets
# (data/teacher_targets_default_flip_crop.safetensors, about 1 MB, carried with data/), before
# moving model.safetensors away; on the CPU 115,000 forward passes (9 faces/s were measured on
# one busy core: up to an hour; detached, and run again it continues where it stopped):
#
#   PRECOMPUTE=1 CONFIG=configs/fer2013_resnet18_distilled.toml OUT=/tmp/out \
#       bash scripts/gpu_release.sh
#
# The script stops at once, before any training, when a distilled recipe has neither its
# targets file nor its teacher's weights. The targets are keyed by each face's pixels: the
# probe's and the smoke run's subsets find their rows in the same file.
#
# One call holds the whole run: last.ckpt (weights and SGD momentum, 90 MB) or even the
# weights alone (22 MB in float16) cannot travel up again with the data (53 MB) in the 64 MiB
# a call takes, so a run cannot resume in a later call. A longer schedule (EPOCHS=300) must
# fit one call; if it is cut short, its best weights so far come back (see 4.).
#
# Try it here first on a CPU subset:  SMOKE=1 OUT=/tmp/out bash scripts/gpu_release.sh
# (the smoke run works on a copy of the teacher-targets file: the one in data/ stays as it is)
# Then one device call:  command "bash scripts/gpu_release.sh", carry ["data"], timeout_s 600.
# Back here: put the bundled files back (mv /tmp/bundled/* src/emotionnet/weights/default/), then
#
#   mkdir -p runs/release && cat <files_at>/release/model.safetensors.part-* \
#       > runs/release/model.safetensors && tar xzf <files_at>/release/meta.tgz -C runs/release
#
# and package it as the bundled model: scripts/package_default_model.py runs/release
# (it re-evaluates the folder on the CPU, checks its reports and writes the card; the GPU's
# TF32 convolutions can move a face or two against the CPU: --max-changed; see its --help).
set -uo pipefail
: "${OUT:?set OUT to the folder that comes back}"
BUDGET=${BUDGET:-540}        # seconds for the whole script; the device call allows 600
MAX_EPOCHS=${MAX_EPOCHS:-300}
MARGIN=${MARGIN:-70}         # the main run's start-up, final evaluation and the copy back
CONFIG=${CONFIG:-configs/fer2013_resnet18.toml}   # a variant of the recipe, for comparisons
GRAPH=${GRAPH:-1}            # probe with train.cuda_graph first; without it if that fails
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
base=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && base=/dev/shm   # checkpoints every epoch: keep them in RAM
work=$(mktemp -d -p "$base")
trap 'rm -rf "$work"' EXIT
export EMOTIONNET_CACHE_DIR="$work/cache"
mkdir -p "$OUT/release"
if [ "${PRECOMPUTE:-0}" = 1 ]; then   # here, on the CPU: the teacher's targets for the recipe
  python3 - "$CONFIG" "${DATA:-../shared/data/fer2013}" <<'EOF' || exit 1
import logging, sys
from emotionnet.data import FER2013
from emotionnet.recipe import Recipe
from emotionnet.training import precompute_teacher_targets
logging.basicConfig(format="%(asctime)s %(message)s", level=logging.INFO)
recipe = Recipe.from_file(sys.argv[1])
train = recipe.train
if train.distill_mode != "precomputed" or not train.distill_teacher or not train.distill_targets:
    sys.exit(f"{sys.argv[1]} has no precomputed teacher targets to compute (distill_mode, "
             "distill_teacher and distill_targets)")
faces = FER2013(sys.argv[2], split=recipe.train_split)
path = precompute_teacher_targets(train.distill_teacher, faces, train.distill_targets,
                                  tta=train.distill_tta, device="cpu")
print(f"teacher targets for {len(faces)} faces (tta={train.distill_tta}): {path}")
EOF
  exit 0
fi

# A distilled recipe needs its teacher's targets file or the teacher's weights: check that
# before spending device time. The smoke run gets a copy of the recipe and of the targets file.
python3 - "$CONFIG" "$work" "${SMOKE:-0}" <<'EOF' || exit 1
import json, os, shutil, sys
from pathlib import Path
from emotionnet.recipe import Recipe
from emotionnet.training import read_config_file
config, work, smoke = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "1"
train = Recipe.from_file(config).train
if not train.distilling:
    sys.exit(0)
teacher, targets = train.distill_teacher, train.distill_targets
weights = teacher is not None and (Path(teacher) / "model.safetensors").is_file()
has_targets = targets is not None and Path(targets).is_file()
print(f"distillation ({train.distill_mode}): teacher {teacher} "
      f"({'with' if weights else 'without'} its weights), targets {targets} "
      f"({'present' if has_targets else 'absent'})")
if not weights and not has_targets:
    sys.exit("neither the teacher's weights nor its precomputed targets are here: run the "
             "script with PRECOMPUTE=1 first (see its header), and carry data/")
if smoke and targets is not None:
    tables = read_config_file(config)
    table = tables["train"]
    for name in ("distill_teacher", "distill_targets"):
        if table.get(name):
            table[name] = os.path.abspath(getattr(train, name))
    table["distill_targets"] = str(work / "smoke_targets.safetensors")
    if has_targets:
        shutil.copyfile(targets, table["distill_targets"])
    model = tables.get("model", {})
    if model.get("init"):
        model["init"] = os.path.abspath(Path(config).parent / model["init"])
    (work / "smoke_recipe.json").write_text(json.dumps(tables, indent=2))
EOF
if [ "${SMOKE:-0}" = 1 ] && [ -f "$work/smoke_recipe.json" ]; then CONFIG="$work/smoke_recipe.json"; fi

tar xzf data/fer2013.tgz -C "$work" || exit 1
command -v nvidia-smi >/dev/null && nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

train=(python3 examples/train_fer2013.py --config "$CONFIG"
  --data "$work/fer2013" --no-progress)
probe_images=6400
probe=(--epochs 2 --max-train-samples "$probe_images")
main=()
graph=()                     # --cuda-graph once a probe with it has worked
if [ "${SMOKE:-0}" = 1 ]; then
  probe_images=512
  probe=(--epochs 2 --max-train-samples "$probe_images" --max-val-samples 256 --device cpu)
  main=(--max-train-samples 512 --max-val-samples 256 --device cpu)
  MAX_EPOCHS=${SMOKE_EPOCHS:-1}
fi

if [ -n "${EPOCHS:-}" ]; then   # a fixed count (the speed is known): no probe
  epochs=$EPOCHS
else
  echo "== probe ($((SECONDS))s)"
  probed=0
  if [ "$GRAPH" = 1 ]; then
    if timeout 240 "${train[@]}" "${probe[@]}" --cuda-graph --output "$work/probe" \
        >"$OUT/release/probe.log" 2>&1; then
      probed=1 graph=(--cuda-graph)
    else
      tail -n 30 "$OUT/release/probe.log"
      echo "the probe with CUDA graphs failed: probing without them"
      mv "$OUT/release/probe.log" "$OUT/release/probe-graph.log"
      rm -rf "$work/probe"
    fi
  fi
  if [ "$probed" = 0 ]; then
    if ! timeout 240 "${train[@]}" "${probe[@]}" --output "$work/probe" \
        >"$OUT/release/probe.log" 2>&1; then
      tail -n 60 "$OUT/release/probe.log"
      echo "probe failed: stopping before the long run"
      exit 1
    fi
  fi
  grep -E "^epoch|images/s|accuracy" "$OUT/release/probe.log" | tail -n 4

  left=$((BUDGET - SECONDS - MARGIN))
  epochs=$(python3 - "$work/probe/history.json" "$left" "$MAX_EPOCHS" "$probe_images" <<'EOF'
import json, math, sys
row = json.load(open(sys.argv[1]))[-1]           # the second epoch: cudnn tuned, caches warm
ips = row["images_per_sec"]
# The recipe's batches of 128, whole batches only: 224 steps (28,672 faces) an epoch.
train_s = int(sys.argv[4]) // 128 * 128 / ips
val_s = max(row["seconds"] - train_s, 0.0)       # validation on the full PublicTest
# + the files: best.safetensors when the best improves, last.ckpt every 10th epoch (the
# 117-epoch run spent 0.24 s an epoch on them writing last.ckpt every epoch)
epoch_s = 28672 / ips + val_s + 0.3
fit = math.floor(int(sys.argv[2]) / (1.15 * epoch_s))
print(max(1, min(int(sys.argv[3]), fit)))
print(f"probe: {ips:.0f} images/s, validation {val_s:.1f} s: {epoch_s:.1f} s per epoch",
      file=sys.stderr)
EOF
  ) || exit 1
fi
echo "== main run: $epochs epochs ($((SECONDS))s)"

limit=$((BUDGET - SECONDS - 15))
[ "$limit" -lt 10 ] && limit=10
# last.ckpt (90 MB) only serves a resume, which no later call can do (the tree it would
# travel in holds 64 MiB): every 10th epoch; best.safetensors is written at every new best.
timeout -s INT "$limit" "${train[@]}" "${main[@]}" "${graph[@]}" --epochs "$epochs" \
  --save-every 10 --output "$work/release" 2>&1 | tee "$OUT/release/train.log"
status=${PIPESTATUS[0]}
echo "== training exited with $status ($((SECONDS))s)"

# Files come back at most 16 MiB each and 8 in all: split the weights, tar the rest.
folder="$work/release"
if [ "$status" = 0 ] && [ -f "$folder/model.safetensors" ]; then
  split -b 15M -d "$folder/model.safetensors" "$OUT/release/model.safetensors.part-"
  # model.onnx (45 MB) stays behind: packaging exports it again here from the weights.
  (cd "$folder" && find . -maxdepth 1 -type f ! -name '*.safetensors' ! -name '*.onnx' \
    -print0 | tar czf "$OUT/release/meta.tgz" --null -T -)
else
  echo "the run did not finish: returning the best checkpoint so far, if any"
  best="$folder/checkpoints/best.safetensors"
  [ -f "$best" ] && split -b 15M -d "$best" "$OUT/release/best.safetensors.part-"
  [ -d "$folder/checkpoints" ] && (cd "$folder/checkpoints" && find . -maxdepth 1 -type f \
    ! -name '*.ckpt' ! -name '*.safetensors' -print0 | tar czf "$OUT/release/meta.tgz" --null -T -)
fi
ls -la "$OUT/release"
exit "$status"
