#!/usr/bin/env bash
# What a lent GPU should do when it has ~10 minutes (one device call), in order:
#   1. the tests marked gpu (CUDA step, bf16, channels_last, one-process NCCL DDP),
#   2. bench/bench.py --device cuda (training/inference throughput, AMP and channels_last on),
#   3. the paper configuration's long run (bench/LONG_RUN.md's recipe: 100 epochs = 20,000 updates of
#      batch 8 over its 1,600 images, x0.1 from epoch 85, test AP every 10 epochs) on CUDA, started with setsid so that it can
#      outlast this command; `bench/gpu_session.sh wait` (a second call on the warm machine) waits for it.
# Everything lands in $OUT (default /tmp/gpu_session): session.log, bench/results.json, paper.log (the
# run's epochs), curve.csv, train_history.csv and LONG_RUN_gpu.md (finished, or collected from the
# epochs so far). BUDGET = seconds this call may take (default 560); DEVICE, EPOCHS, DECAY, CURVE, TRAIN_IMAGES
# change the long run (a dry run on a CPU: DEVICE=cpu EPOCHS=2 DECAY=1 CURVE=1).
# The lent machines' image has torch, torchvision, pandas, scipy, yaml, tqdm and matplotlib but not
# pycocotools: download its wheel here first and carry the folder .whl (listed in .git/info/exclude):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl pycocotools==2.0.11
set -u
OUT=${OUT:-/tmp/gpu_session}; mkdir -p "$OUT"
DEADLINE=$(( $(date +%s) + ${BUDGET:-560} ))
PY=${PY:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then  # wheels carried along: installed beside the image's packages
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
LOG=$OUT/session.log LONG=/tmp/long
stamp() { echo "== $(date +%T) $*" >>"$LOG"; }

if [ "${1:-}" != wait ]; then
  stamp setup; { nvidia-smi; $PY -c "import torch, pycocotools; print(torch.__version__, torch.cuda.get_device_name(0))"; } >>"$LOG" 2>&1
  stamp "gpu tests"; timeout 120 $PY -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider >>"$LOG" 2>&1; echo "rc $?" >>"$LOG"
  stamp "bench.py --device cuda"; timeout 200 $PY bench/bench.py --device cuda --out "$OUT/bench" >>"$LOG" 2>&1; echo "rc $?" >>"$LOG"
  rm -f "$OUT/bench/RESULTS.md"
  stamp "long run started"
  setsid nohup $PY bench/ablation.py --only paper --set train.device=${DEVICE:-cuda} --set train.channels_last=true \
    --set train.epochs=${EPOCHS:-100} \
    --set data.shapes.train=${TRAIN_IMAGES:-1600} \
    --set "train.lr_decay_epochs=[${DECAY:-85}]" --set train.threads=4 --set train.num_workers=4 \
    --set evaluate.bootstrap_resamples=0 --curve ${CURVE:-10} --out $LONG --report $LONG/LONG_RUN_gpu.md \
    >/tmp/long_master.log 2>&1 < /dev/null &
fi
copy() { cp $LONG/paper.log "$OUT/" 2>/dev/null; cp $LONG/paper/curve.csv $LONG/paper/train_history.csv "$OUT/" 2>/dev/null; }
while [ "$(date +%s)" -lt $((DEADLINE - 25)) ] && [ ! -f $LONG/LONG_RUN_gpu.md ]; do copy; sleep 5; done
copy; cat /tmp/long_master.log >>"$LOG" 2>/dev/null
if [ -f $LONG/LONG_RUN_gpu.md ]; then cp $LONG/LONG_RUN_gpu.md "$OUT/"; stamp "long run finished"
else mkdir -p /tmp/collect; $PY bench/ablation.py --collect --only paper --curve ${CURVE:-10} --out $LONG \
       --report /tmp/collect/LONG_RUN_gpu.md >>"$LOG" 2>&1; cp /tmp/collect/LONG_RUN_gpu.md "$OUT/"; stamp "long run still running (collected)"; fi
