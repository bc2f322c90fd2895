#!/usr/bin/env bash
# odecam GPU check, in one call, from the repository root:   bash benchmarks/gpu_check.sh
#
# * finds python3 with torch and reports the card (nvidia-smi), CUDA and torch versions;
# * installs nothing from the network: torch-tensorrt only from a carried .whl/ folder (pip --no-index),
#   and only when it is not importable already; without it the TensorRT steps are skipped with a note;
# * runs benchmarks/gpu_check.py under a hard time limit, well inside 10 minutes: the cuda-graph backend
#   (fp16 / fp32, full per-frame cost: keypoints + frame, and glass to glass), eager and CUDA-graph frame
#   graphs, torch.compile reduce-overhead, then TensorRT only if torch_tensorrt imports;
# * needs only torch on the device (OpenCV, PIL, safetensors are optional: the default weights are read with
#   torch alone); the working tree it carries is about 3 MB (git ls-files + untracked, 2026-11-30);
# * writes gpu-<card>.json to $OUT when set (else benchmarks/results/), plus the log.
# One device call:  run(command="bash benchmarks/gpu_check.sh", timeout_s=600)
# Copy the JSON to benchmarks/results/ and run `python benchmarks/results_table.py` to update RESULTS.md.
set -u
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-benchmarks/results}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.log"
BUDGET="${GPU_CHECK_BUDGET_S:-420}"   # seconds after which no new step starts
LIMIT=$((BUDGET + 120))              # hard limit for the python run

{
echo "== odecam gpu_check $(date -u +%FT%TZ) on $(hostname)"
PY=""
for cand in python3 python; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c "import torch" >/dev/null 2>&1; then PY="$cand"; break; fi
done
if [ -z "$PY" ]; then
  echo "ERROR: no python with torch found; nothing to run"
  exit 3
fi
echo "== python: $(command -v $PY) ($($PY --version 2>&1))"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not available"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"

if $PY -c "import torch_tensorrt" >/dev/null 2>&1; then
  echo "== torch-tensorrt: $($PY -c 'import torch_tensorrt; print(torch_tensorrt.__version__)' 2>/dev/null)"
elif [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  echo "== installing torch-tensorrt from the carried .whl/ folder (no index)"
  timeout 180 $PY -m pip install --no-index --find-links .whl torch-tensorrt 2>&1 | tail -5 \
    || echo "NOTE: installing torch-tensorrt from .whl/ failed; TensorRT steps will be skipped"
else
  echo "NOTE: torch-tensorrt is not installed and no .whl/ folder was carried: TensorRT steps are skipped"
  echo "      (carry wheels built for this torch: torch-tensorrt and its tensorrt dependencies, in .whl/)"
fi

echo "== gpu_check.py (budget ${BUDGET} s, hard limit ${LIMIT} s)"
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" timeout "$LIMIT" $PY benchmarks/gpu_check.py --out "$OUT_DIR" --budget-s "$BUDGET"
rc=$?
[ $rc -eq 124 ] && echo "NOTE: gpu_check.py hit the hard limit; the JSON holds every step finished before it"
echo "== done (rc=$rc); results: $(ls "$OUT_DIR"/gpu-*.json 2>/dev/null | tr '\n' ' ')"
exit $rc
} 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
