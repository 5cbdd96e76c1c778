#!/usr/bin/env bash
# Train the release model from the committed recipe on a lent GPU, in one device call.
#
# Prepare here (the device tool sends the working tree, at most 64 MiB, and ../shared does not
# travel; data/ and runs/ are git-ignored):
#
#   mkdir -p data && tar czf data/fer2013.tgz -C ../shared/data fer2013      # ~53 MB
#   mv src/emotionnet/weights/default/model.safetensors /tmp/                 # keeps the tree small
#
# Try it here first on a CPU subset:  SMOKE=1 OUT=/tmp/out bash scripts/gpu_release.sh
# Then one device call:  command "bash scripts/gpu_release.sh", carry ["data"], timeout_s 600.
# Back here: put model.safetensors back (or replace it), then
#
#   cat <files_at>/release/model.safetensors.part-* > runs/release/model.safetensors
#   cp <files_at>/release/{config.json,README.md,*.json,*.log} runs/release/
#
# and package it as the bundled model: scripts/package_default_model.py runs/release
# (it re-evaluates the folder, checks its reports and writes the card; see its --help).
set -euo pipefail
: "${OUT:?set OUT to the folder that comes back}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
work=$(mktemp -d)
tar xzf data/fer2013.tgz -C "$work"
command -v nvidia-smi >/dev/null && nvidia-smi -L
extra=()
if [ "${SMOKE:-0}" = 1 ]; then
  extra=(--epochs 1 --max-train-samples 512 --max-val-samples 256 --device cpu)
fi
mkdir -p "$OUT/release"
python3 examples/train_fer2013.py --config configs/fer2013_resnet18.toml --data "$work/fer2013" \
  --output "$work/release" --no-progress "${extra[@]}" 2>&1 | tee "$OUT/release/train.log"
# Files come back at most 16 MiB each: split the weights, copy the rest as is.
split -b 15M -d "$work/release/model.safetensors" "$OUT/release/model.safetensors.part-"
find "$work/release" -maxdepth 1 -type f ! -name 'model.safetensors' ! -name '*.ckpt' \
  -size -15M -exec cp {} "$OUT/release/" \;
ls -la "$OUT/release"
