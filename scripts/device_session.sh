#!/usr/bin/env bash
# One GPU session of the reference model: fine-tune from a weights folder for MINUTES, export, evaluate; all under $OUT.
#
# Here, once:  SHARDS=dir bash scripts/device_session.sh pack   # .whl: wheels the GPU image lacks; .device: shards
# There:       the device tool's run, carry [".whl", ".device"], timeout_s 600, command:
#              OUT=$OUT bash scripts/device_session.sh
# Back here:   the run folder, weights/, eval.json and train.log lie in the files the tool brought back.
# On a CPU:    OUT=/tmp/dev PY=.venv/bin/python PRESET=tiny INIT= DATA=shards/ MINUTES=0.1 bash scripts/device_session.sh
#              (tests/test_device_session.py runs it so, before any device minute is spent on it)
#
# Each session starts from the weights it is given (a fresh optimizer), not from a checkpoint: a run folder with
# its optimizer state is 4x the weights and would not fit the tool's 64 MiB carry beside the shards.
set -euo pipefail

PY=${PY:-python3}                          # the GPU image's python3 holds torch, click, pillow, safetensors, tqdm
PRESET=${PRESET:-demo64}
INIT=${INIT-weights/reference}             # tracked, so it travels anyway; empty: train from scratch
DATA=${DATA:-.device/data}
MINUTES=${MINUTES:-7}                      # leaves the 10-minute call time for start-up, export and evaluation
BATCH=${BATCH:-256}                        # a 6M-parameter model needs a big batch to fill a GPU
WORKERS=${WORKERS:-8}
HIGH_NOISE=${HIGH_NOISE:-0.5}              # the reference's recipe (weights/reference/README.md)
EVAL_PAIRS=${EVAL_PAIRS:-200}

if [ "${1:-}" = pack ]; then
    SHARDS=${SHARDS:?set SHARDS to a folder of training shards}
    rm -rf .whl .device && mkdir -p .whl .device/data
    # webdataset and its one missing need; --no-deps keeps numpy/pyyaml the image's own.
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 --platform any -d .whl webdataset==1.0.2 braceexpand==0.1.7
    # Shards up to the carry's room: 64 MiB (less a margin) minus the tracked tree (weights included) and the wheels.
    tracked=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
    budget=$(( ${CARRY_MB:-62} * 1024 * 1024 - tracked - $(du -sb .whl | cut -f1) ))
    for f in "$SHARDS"/*.tar; do
        size=$(stat -c %s "$f"); [ "$size" -le "$budget" ] || break
        cp "$f" .device/data/ && budget=$(( budget - size ))
    done
    echo "packed: $(ls .device/data | wc -l) shards, $(du -sh .device | cut -f1) in .device, $(ls .whl | wc -l) wheels"
    exit 0
fi

: "${OUT:?set OUT to the folder that comes back}"
if [ -d .whl ] && compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
init=(); [ -z "$INIT" ] || init=(--init-from "$INIT")
"$PY" cli.py train --preset "$PRESET" "${init[@]}" --data "$DATA" --out "$OUT/run" --steps 100000000 \
    --max-minutes "$MINUTES" --batch-size "$BATCH" --workers "$WORKERS" --high-noise-share "$HIGH_NOISE" --sample-every 0 --quiet 2>&1 | tee "$OUT/train.log"
"$PY" cli.py export "$OUT/run" --out "$OUT/weights"
"$PY" cli.py evaluate --checkpoint "$OUT/weights" --data "$DATA" --split val --limit "$EVAL_PAIRS" --out "$OUT/eval.json"
