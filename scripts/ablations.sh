#!/usr/bin/env bash
# The paper's ablations (Tab. 3-4) on our data with one training budget per variant:
# full, w/o motion evolution, w/o appearance assistance (all N=1), and full with N=3.
# Usage: bash scripts/ablations.sh [STEPS]   (runs land in runs/ablation-*)
set -euo pipefail
steps=${1:-400}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
cfg=configs/ablation.json  # the default recipe with a fixed N per run
odecam train --config $cfg --out runs/ablation-full --steps "$steps" --refs 1
odecam train --config $cfg --out runs/ablation-no-evolution --steps "$steps" --refs 1 --set evolution.enabled=false
odecam train --config $cfg --out runs/ablation-no-appearance --steps "$steps" --refs 1 --set appearance.enabled=false
odecam train --config $cfg --out runs/ablation-refs3 --steps "$steps" --refs 3
