"""Regenerate ``benchmarks/RESULTS.md`` from the recorded results in ``benchmarks/results/``:

* ``cpu*.json`` — written by ``benchmarks/bench_cpu.py`` / ``odecam bench`` (machine named from /proc/cpuinfo);
* ``gpu*.json`` — written by ``benchmarks/gpu_check.py`` (card named from torch / nvidia-smi);
* ``ab_cpu.json``, ``profile_ort.json``, ``latency_live.json`` — ``benchmarks/ab_cpu.py``, ``profile_ort.py``,
  ``latency_live.py`` (issue 12: per-frame speed and glass-to-glass latency).

Usage: ``python benchmarks/results_table.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
STAGES = ("keypoints", "eyes", "coarse_motion", "ode", "warp", "appearance", "decoder", "frame")


def _f(v, fmt=".1f") -> str:
    return "-" if v is None else format(v, fmt)


def cpu_section(name: str, data: dict) -> list[str]:
    m = data["machine"]
    conv = data["conv_throughput"]
    lines = [f"## CPU (`results/{name}.json`)", "",
             f"* CPU: **{m['cpu']}**, {m['cores']} cores, {m['threads']} threads; torch {m['torch']}, "
             f"onnxruntime {m.get('onnxruntime', '-')}; recorded {data.get('created', '?')}",
             f"* load average (1, 5, 15 min) before: {m.get('loadavg_start')}, after: {m.get('loadavg_end')} "
             "(other jobs were running on these cores: the numbers are noisy)",
             f"* 3x3 conv throughput ({conv['shape']}): torch {conv['torch']:.1f} GFLOP/s, onnxruntime "
             f"{_f(conv.get('onnxruntime'))} GFLOP/s. Floor = GFLOP per frame / {conv['best']:.1f} GFLOP/s.", "",
             "| preset | backend | ODE steps | N | params | GFLOP/frame | floor ms | p50 ms | p95 ms | p99 ms | fps (p50) "
             "| max abs err vs eager | stages p50 ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["runs"]:
        if "error" in r:
            lines.append(f"| {r['preset']} | {r['backend']} | {r.get('ode_steps') or '-'} | {r.get('num_refs', '-')} "
                         f"| | | | | | | | | skipped: {r['error']} |")
            continue
        t = r["total"]
        stages = ", ".join(f"{k} {r['stages'][k]['p50']:.1f}" for k in STAGES if k in r["stages"])
        lines.append(f"| {r['preset']} | {r['backend']} | {r['ode_steps']} | {r['num_refs']} | "
                     f"{r['params']['total'] / 1e6:.2f} M | {r['gflops']['per_frame']:.3f} | {_f(r.get('floor_ms'))} | "
                     f"{t['p50']:.1f} | {t['p95']:.1f} | {t['p99']:.1f} | {r['fps_p50']:.1f} | "
                     f"{_f(r.get('max_abs_err_vs_eager'), '.1e')} | {stages} |")
    s = data.get("summary", {})
    lines.append("")
    for k, v in s.get("targets", {}).items():
        extra = f" ({v['backend']})" if "backend" in v else ""
        lines.append(f"* target `{k}` {'<=' if v.get('at_most') else '>='} {v['target']:g}: measured **{v['value']:.1f}**{extra} -> "
                     f"{'met' if v['met'] else 'NOT met'}")
    for n in (1, 0):
        k = f"lite_N1_over_vox256_N{n}"
        if k in s:
            lines.append(f"* lite (N=1) fps / vox256 (N={n}) fps: {s[k]:.1f}x (best CPU backend of each, same run)")
    plots = sorted((RESULTS / name).glob("*.png")) if (RESULTS / name).is_dir() else []
    if plots:
        lines.append("* plots: " + ", ".join(f"[{p.name}](results/{name}/{p.name})" for p in plots))
    return lines + [""]


def gpu_section(name: str, data: dict) -> list[str]:
    m = data["machine"]
    lines = [f"## GPU (`results/{name}.json`)", "",
             f"* card: **{m.get('gpu', '?')}**; torch {m.get('torch')}, CUDA {m.get('cuda')}, torch-tensorrt "
             f"{m.get('torch_tensorrt') or 'not available'}; recorded {data.get('created', '?')}"]
    for note in data.get("notes", []):
        lines.append(f"* {note}")
    lines += ["", "| preset | graph | engine | precision | N | p50 ms | p95 ms | p99 ms | fps (p50) | max abs err vs eager fp32 "
              "| build s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in data.get("runs", []):
        if "error" in r:
            lines.append(f"| {r.get('preset')} | {r.get('graph')} | {r.get('engine')} | {r.get('precision')} | "
                         f"{r.get('num_refs', '-')} | | | | | | skipped: {r['error'][:160]} |")
            continue
        lines.append(f"| {r['preset']} | {r['graph']} | {r['engine']} | {r['precision']} | {r['num_refs']} | "
                     f"{r['p50_ms']:.3f} | {r['p95_ms']:.3f} | {r['p99_ms']:.3f} | {r['fps_p50']:.0f} | "
                     f"{_f(r.get('max_abs_err'), '.1e')} | {_f(r.get('build_s'))} |")
    lines.append("")
    for k, v in data.get("targets", {}).items():
        lines.append(f"* target `{k}` >= {v['target']:g} fps: measured {_f(v.get('value'), '.0f')} -> "
                     f"{'met' if v.get('met') else 'NOT met'}")
    return lines + [""]


SPEED_NOTES = """\
First round (every change computes the same function to float rounding; eager outputs are bit-identical
to the previous code; fp32 parity of every backend stays <= 1e-4):

* onnxruntime: the image skip's warp of the 256 px view images and its blend run in torch beside the graph
  (`FrameGraph(skip_tail=True)`; onnxruntime's CPU GridSample took 10-13 ms of a loaded frame, torch's
  grid_sample ~1 ms); F_G's RGB and mask convolutions, and F_C's three heads, run as one convolution each
  (onnxruntime pads a 3- or 1-channel output to its 16-channel block: 6.7 -> 3.6 ms at 256 px); F_A's 81 -> 2
  flow head as a 1x1 convolution plus 9 shifted sums (1.6 -> 0.6 ms); F_A's first (64 + 1)-channel depthwise
  convolution split by part (7.9 -> 3.7 ms); the sums over views as additions (ReduceSum over a middle axis:
  3.4 -> 1.2 ms). Switched on only while exporting (`odecam.model.fastpath`). Interleaved A/B against 5e37fc5
  (2 threads, loaded; the `ab_cpu.json` of commit 4adff97): 1.50x N=0, 1.55x N=1.
* fp16 (the `cuda-graph` backend, GPU only): F_K's temperature softmax, F_C's heatmaps / local motions /
  softmax, the ODE state and every sampling grid are computed in fp32 inside the model (no-ops for fp32);
  the fp16 copy folds BatchNorm into the convolutions and keeps F_K, F_C and F_E in fp32 (10% of the FLOPs):
  lite's image skip samples 256 px images with the motion field, so a 4e-4 keypoint error moved edges by
  0.05 px (0.12 max abs on carphone -> astronaut). Emulated on this CPU (torch fp16 kernels), default
  weights at 256 px, carphone -> astronaut: max abs error vs fp32 2.7e-3 (N=0) and 1.1e-3 (N=1), from NaN /
  1.1 before. The GPU numbers come from `bash benchmarks/gpu_check.sh` (not run yet: no device this session).
* Targets of issue 12 on this loaded machine (`results/cpu_lite256.json`, `odecam bench`, random weights): N=1
  35.6 fps p50, N=0 50.4 fps (targets 100 and 150), 4.3x and 3.5x of the floor measured in the same run
  (target 3x): NOT met here.
* Quiet rerun, the shipped 256 px default (`results/cpu_default256.json`: `odecam bench --preset lite
  --checkpoint odecam/assets/default.safetensors --backend onnxruntime --refs 0 1 --frames 200`, nothing
  else running): N=0 p50 19.4 ms (51.5 fps), N=1 p50 20.5 ms (48.8 fps); floor 2.7 / 3.1 ms (onnxruntime
  measured 215 GFLOP/s on 3x3 convolutions in that run), so 7.2x and 6.6x the floor. Targets (100 fps at
  N=1, 150 at N=0, within 3x of the floor): NOT met. Issue 9's bar for the default (30 fps p50 at N=0, 256 px):
  met.
* int8 static quantisation tried (onnxruntime.quantization, QDQ, per-channel int8 weights, uint8 activations,
  Conv only, 16 calibration frames) on the N=1 frame graph: 21.3 ms against 18.8 ms fp32 in the same run and
  34 dB PSNR on the decoded image, under the 40 dB floor: not shipped. bf16 was not tried (no lossy CPU mode
  ships, so `odecam bench` has no PSNR column yet).
* Left as it was after the first round: the decoder's 256 px up-block (nearest upsample + depthwise +
  pointwise) and its output convolution were then the largest costs (addressed in the second round below).
* Second round (this section's A/B and profiles; 1 onnxruntime thread under `nice`, a training job on the
  other core: absolute ms are noisy, each A/B alternates old and new frame by frame in one process):
  * step 1, profile of the shipped default at 256 px (`results/profile_ort_speed_before.json`, code 76d4d08):
    N=0 frame_tail 19.3 ms wall, Conv 60% of the kernel time. The largest single node was F_G's 3x3 output
    convolution at 256 px (RGB + mask, 4 channels padded to 16: 4.2 ms), then the 32-channel 256 px
    depthwise (1.5 ms), pointwise (0.9 ms) and nearest upsample (0.4 ms) of the last up-block. Non-conv
    costs and where they come from: Mul / Add / GatherND / Where / compares (1.4 + 0.9 + 0.9 + ~0.5 ms at
    N=0, 2.1 + 1.9 + 1.6 + ~0.6 at N=1): the two 64 px feature warps (motion warp of F_S, F_A's warp) and the
    fusion of Eq. 6; GridSample (0.8 / 1.4 ms), Sub and Einsum (0.3 / 0.5 ms): F_C's K + 1 deformed view
    images, its (V, K+1, h, w, 2) local-motion grids and T~; Transpose / ReorderInput / ReorderOutput
    (~0.9 / 1.0 ms): NHWC <-> NCHW around the gathers and onnxruntime's NCHWc blocks at convolution edges;
    Softmax (0.2 / 0.4 ms): F_C's coefficients and the view weights. Outside the graph, the torch image-skip
    tail cost 2.2 / 4.8 ms (N=0 / N=1), 0.8 ms per view of it in `resize_grid`.
  * step 2 (17efe8c): F_G's last up-block and output convolutions at 128 px (one convolution per phase of
    the nearest upsample, the output convs as one 2x2 convolution over the 4 phases, then `pixel_shuffle`):
    that part 12.7 -> 6.1 ms in isolation; F_C with zero-order motions as separable translations (Gaussians
    as outer products, the deformed images as two small matrix products, T~ = sum alpha_i Delta_i: no
    GridSample, no motion grids). A/B against 76d4d08: **1.18x N=0, 1.14x N=1** (heavily loaded run).
  * 5527c2a: the torch tail upsamples the contiguous displacement and adds a cached identity grid (instead
    of interpolating the strided sampling grid) and blends with one `lerp` (`graphs.finish_tail`): A/B
    against 17efe8c **1.07x N=0, 1.07x N=1**.
  * F_A's appearance warp and its share of the fusion in one pass (`fastpath.warp_views_sum`: the per-pixel
    factors (1 - occlusion) C~_j folded into the gathers' corner weights, views summed channels-last): A/B
    against ad428e0 **1.03x N=0, 1.05x N=1**, outputs equal to 1.2e-7.
  * Tried and dropped (measured, no gain): the output head as a stride-2 transposed convolution instead of
    DepthToSpace (0.97x in the full A/B); the phase-layout outputs shuffled in torch instead of in the graph
    (0.99x / 1.01x); one 4-corner gather per warp with MatMul or ReduceSum weighting (slower than 4 gathers
    in onnxruntime: 2.0 / 5.3 ms against 1.6 ms); F_K's 19 -> 10 heatmap head split or padded to 16 outputs
    (0.31 -> 0.25 ms at best); F_C's first 44-channel depthwise block padded to 48 channels (no change).
  * Where the N=0 frame graph's time goes now (1 thread, each region exported up to that point, p50):
    F_C 0.9 ms, F_E 0.3, motion warp 1.2, F_A + fusion 2.9, bottleneck 1.0, first up-block 1.1, last up-block
    and output head 3.1 (N=1: 1.6, 0.6, 2.8, 5.9, 1.1, 0.9, 3.5). Convolutions are about half of its kernel
    time (profile below); the rest is spread over ~380 small nodes.
* step 3, bf16 (`results/speed_inductor.json`, `python benchmarks/bench_cpu.py --inductor-trial`):
  onnxruntime's CPU provider has no bf16 convolutions, so bf16 went through torch: `torch.compile`
  (inductor, `freezing=True`) of F_K and the frame function, fp32 and bf16 (`half_copy` in bfloat16:
  BatchNorm folded, F_K / F_C / F_E fp32), NCHW and channels-last, interleaved with the onnxruntime backend
  in one run (N=0, 1 thread, loaded). Every inductor mode was 1.6-1.7x slower than onnxruntime (32.0 vs 53.2
  fp32 / 49.0 bf16 ms; 20.0 vs 33.1 fp32 / 32.0 bf16 ms channels-last) and took 75-146 s to compile; bf16
  kept 58.6 dB PSNR (min over 30 carphone -> astronaut frames, uint8) against fp32 eager, above the 40 dB
  floor, but was no faster than fp32. Tried, not shipped: no lossy CPU mode ships, so `odecam bench` still
  has no PSNR column. int8 (first round): 21.3 vs 18.8 ms fp32 and 34 dB, not shipped.
* Whole round, A/B against 76d4d08 (keypoints + frame + uint8, default weights, interleaved, loaded):
  1 thread (`results/ab_cpu.json`) **1.26x N=0** (20.1 -> 15.9 ms p50), **1.31x N=1** (30.8 -> 23.5 ms);
  2 threads (`results/ab_cpu_speed_2threads.json`) **1.28x N=0** (20.4 -> 16.0), **1.44x N=1** (34.7 -> 24.2).
  Max abs difference new vs old 4.9e-5; onnxruntime vs fp32 eager (`odecam bench`'s parity column) 4.7e-5 /
  2.3e-5.
* Targets of issue 12, shipped default at 256 px, `odecam bench --checkpoint odecam/assets/default.safetensors
  --backend onnxruntime --refs 0 1 --frames 200` on the loaded machine (load average ~3.6 on 2 cores, a
  training job holding more than one core; `results/cpu_default256_speed.json`, 2 threads, and
  `..._1thread.json`, `--threads 1`, which is faster while the other core is taken): N=0 19.2 ms p50 (51.9 fps)
  with 2 threads, 17.2 ms (58.3 fps) with 1; N=1 27.9 ms (35.9 fps) and 21.7 ms (46.0 fps). A second 2-thread
  run of the same code minutes earlier gave 20.3 / 28.7 ms, one of the code before the last step 15.5 / 24.1 ms:
  absolute numbers here move by +-25% with the load; the interleaved A/Bs above are the comparison. The
  3x3-conv throughput those runs measured was cut by the load (79-107 GFLOP/s, floors 5.4-8.5 ms), so their
  "x floor" ratios (2.6-3.5x) are not the issue's measure; against the quiet run's floor (215 GFLOP/s: 2.7 /
  3.1 ms) these loaded latencies are 6-9x. Targets (150 fps at N=0, 100 fps at N=1, within 3x of the floor):
  **NOT met**.
* Quiet rerun after this round (`results/cpu_default256_quiet.json`, same command, 2 threads, nothing else
  running, load average 1.1 from the job just before): **N=0 11.7 ms p50 (85.8 fps), N=1 16.1 ms (62.0 fps)**,
  against 19.4 / 20.5 ms in the quiet run before this round (1.66x / 1.27x). onnxruntime measured only
  112 GFLOP/s on 3x3 convolutions in this run (215 in the one before), so its floor reads 5.1 / 6.0 ms (2.3x /
  2.7x); against the earlier floor of 2.7 / 3.1 ms the path is 4.3x / 5.2x. Targets (150 fps at N=0, 100 fps
  at N=1, within 3x of the floor): **NOT met**; the 3x ratio depends on which conv throughput the floor uses.
* Third session (2026-11-30, afternoon): the torch image-skip tail became one implementation
  (`generator.sampling_grid`: the upsampled contiguous displacement plus a cached identity grid, now also in
  `Generator.warp_views` on the torch path; `graphs.finish_tail` = `blend_skip(warp_images(...))`; frames
  within 3.7e-5 of before). Microbenchmarks of the tail (loaded machine): V=2 grid at 256 px 1.6 -> 0.66 ms,
  whole V=2 tail 5.6 -> 4.9 ms interleaved. The onnxruntime path already used that formulation, so its
  speed is unchanged: rerun of the same command on the idle machine with the new default (same
  architecture; `results/cpu_default256_idle.json`, training stopped, load average 0.85 and falling): **N=0
  11.5 ms p50 (79.3 fps over wall time; p95 20.8 ms), N=1 17.7 ms (53.2 fps)**, onnxruntime 191 GFLOP/s on
  3x3 convolutions (floors 3.0 / 3.5 ms: 3.8x / 5.1x). A second run a minute later (300 frames) gave 13.5 /
  17.8 ms: this VM's idle numbers move by about 15%. Targets (150 / 100 fps, 3x floor): **NOT met**.
* Left as it is: the decoder (bottleneck, up-blocks, head: 5 of the 10 ms of an N=0 graph) and F_A + fusion
  (3 ms) are the largest parts, mostly convolutions the architecture asks for; what remains for "same
  function" rewrites is small (each tried one above gave <= 5%). Bigger steps need a quiet machine to measure
  2-thread scaling, fewer decoder channels at 128-256 px (a model change), or lower-precision kernels that
  are actually faster here (bf16 through inductor was not).
* Fourth session: what a model change would buy, measured before training one (`results/arch_speed.json`,
  `python benchmarks/arch_speed.py`: keypoints + frame graph of `lite` variants in onnxruntime, random
  weights, 1 thread, training paused, load average 1.0). lite: N=0 10.5 ms, N=1 15.7 ms. Halving the
  decoder's channel base (`generator.block_expansion` 16 -> 8): 7.8 / 11.0 ms; 12 channels is *slower*
  (12.3 / 16.6: onnxruntime pads to its 16-channel blocks); F_A at 8 hidden channels as well: 7.1 / 10.1 ms;
  F_K at 8 channels too: 7.0 / 10.5 ms; F_A switched off (not an option: it is the paper's F_A): 8.9 / 10.7.
  With the image skip's ~1 ms beside the graph, the smallest of these is about 125 fps at N=0 and 90 fps at
  N=1: even a model with half the decoder and F_A would miss 150 / 100 fps on these 2 cores, so no weights
  were trained for one. The same session measured that onnxruntime gains nothing from the second core on this
  graph (frame graph 10.2 ms with 1 thread, 10.6 with 2 without spinning, 18.5 with spinning while another
  process ran): the 2-core targets would need a decoder that does less work at 256 px, not more threads.
* Sixth session: OpenVINO 2026.4.1 (pip wheel, 59 MB; not a dependency) on the same frame_tail ONNX graph
  of the shipped default, carphone -> astronaut, 1 thread, loaded machine, interleaved with onnxruntime
  (scratch script): fp32 12.4 ms p50 against onnxruntime's 10.3 (0.83x), outputs equal to 89 dB PSNR;
  bf16 (`INFERENCE_PRECISION_HINT`, this CPU's avx512_bf16) 9.7 ms (1.06x) but **22 dB** PSNR on the
  rendered uint8 frames, far under the 40 dB floor (it runs the sampling grids in bf16 too). Not adopted;
  onnxruntime stays the CPU backend.
* Seventh session (idle machine; the VM's timings still move by 10-20% between runs, so the A/B alternates
  old and new frame by frame):
  * The image-skip tail beside the graph cost **1.8 ms (N=0) and 3.9 ms (N=1)** of a frame measured inside
    the per-frame path, 2-4x what it costs alone (0.8 / 2.6 ms: the graph run before it leaves the view images
    out of cache), and torch's elementwise ops on mixed layouts were 5x slower than on one layout. Now
    (`odecam.engine.image_skip.ImageSkipTail`): the view images are kept channels-last, warped by
    `cv2.remap` with float maps (bilinear, zero border: the same values as `grid_sample` to 1e-7, one read of
    a pixel for its three channels), the field upsampled to pixel maps by two small matrix products, fusion
    and blend in OpenCV on channels-last buffers; `frame_tail` returns `decoded` and `skip_mask` channels-last
    (`FrameGraph(nhwc_tail=True)`), and `to_image` converts a channels-last float frame with OpenCV (clamp,
    then `convertScaleAbs`: 0.17 -> 0.02 ms, the same bytes). Frames equal the torch tail's to 3e-5
    (`tests/test_image_skip.py`). A/B against 44245af (`python benchmarks/ab_cpu.py --old <44245af> --refs 0 1
    --frames 400`, 2 threads, keypoints + frame + uint8; `results/ab_cpu_speed_tail.json`): **1.09x N=0**
    (11.51 -> 10.60 ms p50), **1.12x N=1** (18.30 -> 16.35 ms). `odecam bench` of the default right after
    (`results/cpu_default256_speed_tail.json`): N=0 10.9 ms p50 (90.5 fps over wall time), N=1 14.8 ms
    (65.2 fps); a run a minute earlier on the same idle machine gave 19.9 / 25.3 ms (a noisy neighbour on the
    VM host). Targets (150 / 100 fps, 3x floor): **NOT met**.
  * `odecam bench` now prints and records issue 12's targets itself (`lite256_N{0,1}_fps_p50` >= 150 / 100,
    `lite256_N{0,1}_over_floor` <= 3, from the fastest CPU run of lite at 256 px). The session's last run
    (`results/cpu_default256_speed_final.json`, all of this session's changes, idle machine): N=0 11.0 ms p50
    (90.7 fps, 4.0x the floor), N=1 15.4 ms (64.8 fps, 4.8x): **NOT met**.
  * Glass to glass (`python benchmarks/latency_live.py --runs 2 --breakdown`, `results/latency_live.json`): the
    framing stage of `live` measured the face's roll (dlib's 5 landmarks, ~0.4-1 ms) on every frame; it now
    measures it with the detector, every `detect_every`-th frame, each measurement weighted
    1 - (1 - w)^N so the levelling angle moves as fast (`tests/test_framing.py`). Framing p50 2.0-2.5 ->
    0.75-0.8 ms. Capture-to-sink p50 14.8 / 14.2 ms against the model's 11.6 / 11.2 (**+3.1 / +3.0 ms**, target
    <= 5; the two runs just before this change gave +6.2 and +4.0), p95 +9.7 / +10.3 ms (target <= 15): met,
    on the idle machine (load 0.5).
  * Tried, not adopted: the frame cut into two row bands run side by side on the two cores (two onnxruntime
    sessions of one intra-op thread each; stage 1: F_C and F_E repeated per band plus the band's motion warp
    and F_A's hourglass with a 12-row halo, stage 2: F_A's warp reading the whole warped frame, fusion and
    decoder with a 4-row halo; outputs equal to the whole graph's to float rounding, 1.7e-4 against eager
    like the whole graph). Two one-thread sessions do run in parallel here (1.71-2.1x throughput), but the
    repeated F_C / F_E, the halos and ~0.1 ms per hand-over left **1.00-1.06x** against onnxruntime's own two
    threads (which, unlike the fourth session's loaded measurement, give 1.2x over one thread on the idle
    machine: 10.1 -> 8.0 ms for the frame graph). A 4-row halo for F_A's hourglass too was 1.12x but off by
    up to 1.1e-2 on noise views (the hourglass pools to a quarter of the rows: 12 rows are needed). Also
    measured and dropped: ONNX io_binding into preallocated outputs (1%), spin-waiting threads (no gain
    idle), glibc malloc thresholds (no page faults on the per-frame path), and the decoder head writing
    channels-last directly (its phases as one 6-D Transpose instead of DepthToSpace, the crop and a
    Transpose, which the op profile put at 1.7 ms together: 8.04 -> 8.43 ms for the N=0 graph, slower).
* Ninth session (2026-12-01, idle machine; interleaved A/Bs again):
  * **F_G's pixel-shuffle head, a new default.** The op profile of the shipped default put F_G's 256 px end
    (the phase-layout last up-block, its output convolution and DepthToSpace) at about 3 ms of a 10 ms N=0 frame.
    `generator.pixel_shuffle` 2 (new switch) drops the last up-block: one 3x3 convolution at 128 px gives RGB
    and M for the 4 phases of each 2x2 block, `pixel_shuffle` puts them in place. Variants timed first with
    random weights (`python benchmarks/arch_speed.py --variants lite shuffle2 shuffle4 shuffle2_k1 shuffle4_k1
    --threads 2 --frames 400`, now interleaved frame by frame): keypoints + frame graph 11.1 / 10.2 / - / 9.5 /
    8.5 ms at N=0 (lite / shuffle2 / shuffle4 / 1x1 head at 128 px / 1x1 head at 64 px); the 1x1 heads lost the
    painted mouth (mouth r 0.697) or showed 4x4 blocks, so the 3x3 head at 128 px ships. Its weights are the
    previous default's with the head distilled from that model (`scripts/distill_head.py`, EVALUATION.md);
    issue 9's numbers did not move. A/B against the previous commit (`python benchmarks/ab_cpu.py --old
    <3fdbac7~1> --refs 0 1 --frames 400`, `results/ab_cpu_speed_shuffle_head.json`, both sides finishing the frame
    with the OpenCV tail): **1.08x N=0** (11.07 -> 10.25 ms p50), **1.07x N=1** (15.02 -> 14.09 ms).
    `ab_cpu.py` now loads each checkout's default with that checkpoint's own architecture, and finishes the old
    side with `ImageSkipTail` when the old checkout has it (it used torch's tail, which overstated a model
    change: 1.18x in the first run).
  * **Spin-waiting, measured again.** Timed alone, a graph runs faster when onnxruntime's idle threads spin
    (keypoints 1.0 -> 0.69 ms, frame graph 7.7 -> 6.2 ms at N=0); with per-session pools that spin between
    runs, the keypoint and frame sessions fight and the frame takes 2x longer (why the seventh session saw no
    gain). With `session.force_spinning_stop` each pool spins only during its own run. `odecam bench --spin`
    (new; the backend's `spin=True`) measures it; off by default everywhere, since beside a busy program it
    loses: `python benchmarks/spin_ab.py --refs 0 1 --frames 400` (`results/spin_ab.json`, interleaved):
    **1.17x N=0** (10.76 -> 9.17 ms p50), **1.16x N=1** (15.50 -> 13.40 ms) on the idle machine, and with one
    CPU-bound process beside it (`--busy 1`, `results/spin_ab_busy.json`) **0.76x** (18.28 -> 24.12 ms).
  * `odecam bench --preset lite --checkpoint odecam/assets/default.safetensors --backend onnxruntime --refs 0 1
    --frames 300` with the new default (`results/cpu_default256_speed_shuffle.json`): **N=0 10.0 ms p50
    (99.7 fps, 4.0x the floor), N=1 14.6 ms (68.5 fps, 5.0x)**; with `--spin`
    (`results/cpu_default256_speed_shuffle_spin.json`): **N=0 8.5 ms (117.6 fps, 3.2x), N=1 12.8 ms (78.0 fps,
    4.1x)**. Targets (150 / 100 fps, within 3x of the floor): **NOT met**.
* Tenth and eleventh sessions (2026-12-01): **a narrower student of the default, measured and not shipped.**
  `python benchmarks/arch_speed.py --variants lite shuffle2 shuffle2_be8 shuffle2_app8 shuffle2_be8_app8` (1
  thread, keypoints + frame graphs, random weights; `results/arch_speed_student.json`, this session's idle
  machine): the default's architecture (`shuffle2`) 10.85 / 16.92 ms (N=0 / N=1), F_G's channel base 16 -> 8
  7.68 / 12.05, F_A at 8 hidden channels alone 10.44 / 15.83, both 7.18 / 10.91 (1.51x / 1.55x; the previous
  day's machine: 5.59 / 8.81 -> 3.88 / 6.07). That student (0.13 M parameters, 0.27 GFLOP) was distilled from
  the default (`scripts/distill_student.py`; F_K, F_C, F_E unchanged) and measured by `odecam bench` back to
  back with the default on this session's idle machine (`results/cpu_default256_speed_vs_student.json`,
  `results/cpu_student256_speed.json`): **N=0 11.9 -> 9.3 ms p50 (84 -> 108 fps), N=1 16.1 -> 14.5 ms (62 ->
  69 fps)**, floor ratios 4.8x / 5.5x -> 7.3x / 9.4x (the floor halves, the memory-bound rest does not). This
  machine ran the default 1.4x slower than the previous day's (8.6 ms at N=0 then), so neither would meet 150 /
  100 fps here. Not shipped: its open mouths are lighter, carphone mouth r 0.64-0.68 against issue 9's 0.7
  (`EVALUATION.md`, "Candidate of 2026-12-01"). Targets: **NOT met**.
* Twelfth session (2026-12-01): **F_A on the fused views, a new switch on in the default** (`appearance.fused`:
  F_A's hourglass, flow head and warp run once on sum_j C~_j F~_j instead of once per view; N=0 is the same
  computation). Timed first (`python benchmarks/arch_speed.py --variants shuffle2 shuffle2_fused_app --refs 0 1 3
  --threads 2 --frames 400`, random weights, `results/arch_speed_fused_app.json`): 11.47 / 14.57 / 19.97 ->
  11.35 / 12.98 / 15.22 ms at N=0 / 1 / 3. With the default's weights its frames equal per-view F_A's to 82.8 dB
  PSNR at N=1 and 88.3 dB at N=3 (minimum over every 4th carphone frame; max abs 1.1e-2 / 4.7e-3), and carphone's
  N=3 reconstruction is unchanged (L1 0.04287 both, AKD 4.69 px). A/B against the per-view default
  (`python benchmarks/ab_cpu.py --old <previous checkout> --refs 0 1 3 --frames 400`,
  `results/ab_cpu_speed_fused_app.json`, interleaved): **1.00x N=0** (bit-identical), **1.09x N=1** (15.66 ->
  14.37 ms p50), **1.22x N=3** (29.30 -> 23.99 ms). `odecam bench ... --refs 0 1 3 --frames 300` after it
  (`results/cpu_default256_speed_fused_app.json`): N=0 10.7 ms p50 (93.5 fps, 4.0x the floor), N=1 13.6 ms (73.7
  fps, 4.8x), N=3 20.3 ms. Also measured this session and not adopted: onnxruntime's `ORT_PARALLEL` execution
  mode on the frame graph (N=0: 7.10 ms sequential with 2 threads against 9.45 / 9.85 ms parallel with 1 / 2
  intra-op threads), and 1 thread for the keypoint graph (1.26 against 1.41 ms: 1.4% of a frame). Targets (150 /
  100 fps, 3x the floor): **NOT met**.
* Thirteenth session (2026-12-01): **spin-waiting chosen as it runs, the default everywhere** (`spin='auto'`,
  `odecam.engine.spin`). Spinning threads were 1.15x faster on the idle machine and 0.55-0.76x beside one
  CPU-bound program, so the rendering commands had kept them off. Now the onnxruntime backend builds two sessions
  of each graph (sleeping and spinning threads) and a `SpinChooser` per graph runs the faster one: the median of
  the last 9 run times of each, a switch when the other is 5% faster, the other one tried every 48th run and again
  at once after a promising try. Same outputs (the sessions differ only in how a thread waits; test: frames equal
  exactly). `python benchmarks/spin_ab.py --refs 0 1 --frames 400` (interleaved off / on / auto;
  `results/spin_ab_auto.json`): idle, **N=0 1.16x** (10.62 -> 9.15 ms p50; spun 96% of the frame-graph runs),
  **N=1 1.14x** (14.47 -> 12.64 ms; 97%), always-on 1.16x / 1.16x; `--busy 1 --frames 300`
  (`results/spin_ab_auto_busy.json`): auto **1.01x / 0.99x** of never spinning (13.59 -> 13.49, 19.17 -> 19.40 ms;
  spun 3%, the probes) where always-on is 0.60x / 0.55x. A first version (a probe every 32 runs, 7 kept, 3%, no
  back-to-back probes) spun only 52-82% of the idle runs: stale probe times kept it sleeping for ~130 frames.
  `odecam bench ... --refs 0 1 --frames 300` with auto (`results/cpu_default256_speed_spin_auto.json`): N=0
  11.2 ms p50 (89.7 fps, 4.3x the floor), N=1 12.0 ms (83.5 fps, 4.3x); `--spin off` right after
  (`results/cpu_default256_speed_spin_off.json`): 11.6 / 14.2 ms. Back-to-back runs on this VM move by 10-20%;
  the interleaved A/B above is the comparison. Glass to glass with auto (`results/latency_live.json`): extra p50
  +4.4 / +4.5 ms, p95 +11.1 / +13.6 ms (targets 5 / 15: met; with `ODECAM_SPIN=off` +4.1 / +3.8 and +12.5 /
  +13.5). Beside two CPU-bound processes (`python benchmarks/bench_load.py --configs default`, scratch JSON): `live`
  kept 19.9 fps against 29.9 idle (67%; 70% before, target 60%). `ODECAM_SPIN=auto|on|off` sets it for demo / live / serve / receive / eval; `odecam bench --spin`
  (bare: on) takes `auto` / `on` / `off`. Targets (150 / 100 fps, 3x the floor): **NOT met**.
* Fourteenth session (2026-12-01, night): **F_G's pixel-shuffle head as a 1x1 convolution, a new default**, and a
  faster image-skip tail.
  * The op profile (`python benchmarks/profile_ort.py --refs 0 --threads 1`) put F_G's 3x3 head at 128 px (32 -> 16
    channels, 151 MFLOP: 28% of an N=0 frame's FLOPs) at 1.45 ms of an 11 ms frame graph, its largest node. As a
    1x1 convolution it costs a tenth of the FLOPs (0.54 -> 0.41 GFLOP per N=0 frame). Timed first with random
    weights (`python benchmarks/arch_speed.py --variants shuffle2_fused_app shuffle2_fused_app_k1 --refs 0 1
    --threads 2 --frames 400`, `results/arch_speed_k1_head.json`): keypoints + frame graph 9.06 -> 8.47 ms at N=0,
    12.89 -> 12.28 ms at N=1. The weights: the head re-fitted from the default's own 3x3 head with the up-block
    that feeds it (`scripts/distill_head.py --kernel 1 --train-up-block --painted-weight 60`, 9 minutes; its
    frames equal the previous default's to 50.9 dB PSNR, 29.1 dB over the pixels the decoder paints); issue 9's
    numbers barely move (EVALUATION.md). A/B against the previous default (`python benchmarks/ab_cpu.py --old
    <previous checkout> --refs 0 1 --frames 400`, `results/ab_cpu_speed_k1_head.json`): **1.07x N=0** (10.44 ->
    9.78 ms p50), **1.05x N=1** (13.76 -> 13.14 ms).
  * The image-skip tail (`odecam.engine.image_skip`): the view weights upsampled by `cv2.resize` (the values of
    `F.interpolate` to 1.2e-7, 30x faster: 0.64 -> 0.02 ms for 3 views) and fused as a chain of one-pass
    `cv2.blendLinear` calls (C~ is a softmax: sum_j C~_j x_j is a chain of two-way blends; its 1e-5 in the
    denominator made negligible by scaling the weights by 1e6), the remap coordinates as one upsampling of
    field + node positions (the identity is linear in the pixel index, which bilinear interpolation keeps), the
    M blend in one `blendLinear` pass. Isolated, cold caches: 1.20 -> 1.06 ms (N=0), 2.12 -> 1.75 (N=1), 3.24 ->
    2.42 (N=3). `benchmarks/ab_cpu.py` had run this checkout's tail on both sides; it now loads the old
    checkout's own `image_skip.py`. A/B against the session's start: 0.99x N=0, 1.03x N=1, 1.05x N=3 (max abs
    difference 3.6e-5 on random views).
  * Whole session, A/B against its start (d9ed6bb; `results/ab_cpu_speed_k1_session.json`): **1.07x N=0**
    (10.70 -> 10.02 ms p50), **1.07x N=1** (13.50 -> 12.63 ms), **1.07x N=3** (20.99 -> 19.64 ms).
  * `odecam bench --preset lite --checkpoint odecam/assets/default.safetensors --backend onnxruntime --refs 0 1
    --frames 300` (spin auto; `results/cpu_default256_speed_k1.json`): **N=0 8.4 ms p50 (118.4 fps, 4.5x the
    floor), N=1 10.7 ms (93.6 fps, 5.2x)**; the previous default a minute earlier
    (`results/cpu_default256_speed_before_k1.json`): 8.7 / 10.5 ms, and the new one a minute before that 8.8 /
    11.1 ms: on this VM back-to-back runs differ by more than the change, the interleaved A/B is the comparison.
    The floor ratio rises because the floor falls with the FLOPs (2.4 -> 1.9 ms) while the memory-bound rest
    does not. Targets (150 / 100 fps, 3x the floor): **NOT met** (N=1 at 94% of its 100 fps).
  * F_K's area pooling beside the graph: F_K first averages 4 x 4 blocks of the 256 px frame (`keypoints.antialias`
    off); the in-process onnxruntime backend now takes the frame pooled by OpenCV (`to_tensor(..., pool=4)`:
    INTER_AREA of the float frame, the same values to 1.8e-7) and its keypoints graph reads 64 px
    (`KeypointGraph(pooled=True)`, `Backend.keypoint_pool`; export folders keep the full-size graph). A/B against
    the 1x1-head commit, frames in as uint8 (`ab_cpu.py` now converts each side's frame with `to_tensor`,
    `results/ab_cpu_speed_pooled_fk.json`): **1.01x N=0** (9.33 -> 9.25 ms), **1.02x N=1** (12.69 -> 12.49 ms),
    max abs difference 4e-5.
  * Measured and not adopted: the gather warps' tables padded by zero rows and columns (1 before, 2 after) so that
    clamped coordinates replace the 4 x 10 bounds-mask nodes per warp (same values as `grid_sample` to 1.8e-7, NaN
    points read zeros): A/B 1.01x N=0, 1.01x N=1 (a Pad node per frame eats what the masks cost); relative motion
    in NumPy instead of torch: 41 -> 12 us. A depthwise-separable 3x3
    head (rank 1 per channel: 54% relative error from the trained 3x3 weights before any training): alone, on 2
    threads, the head with its sigmoid at 128 px took 0.49 ms against 0.36 for the 1x1 head and 0.95 for the 3x3
    one, so the 1x1 head was tried first and kept.
* Fifteenth session (2026-12-01, evening): **six export rewrites of the per-frame graphs, all the same function to
  float rounding** (no weights changed; max abs difference to the previous code 4e-5, as before). Found with the op
  profile at one thread (`python benchmarks/profile_ort.py --refs 0 1 --threads 1 --frames 200`,
  `results/profile_ort.json`):
  * F_K's head: the hourglass ends with its last up-block's 16 channels beside the 3 input channels; onnxruntime's
    blocked (NCHWc) convolutions need channel counts that are multiples of the block, so the 19-channel head ran
    unblocked (0.42 ms of F_K's 1.37 ms). On the export fast path it is one convolution per half
    (`fastpath.conv_parts`, now with the bias in the first part): F_K 1.37 -> 0.98 ms at one thread.
  * F_G's pixel-shuffle head leaves the graph unshuffled (`FrameGraph(phase_tail=True)`,
    `Generator.decode_phases`: the head's output channels reordered to (phase, channel), channels-last), and
    `ImageSkipTail.from_phases` puts it at full resolution with one NumPy copy and splits image from M with
    `cv2.mixChannels` (0.25 ms), where DepthToSpace alone took 0.72 ms and two transposes followed it. The
    frames are bit-identical (test).
  * Softmax over a middle axis (F_C's alpha over K + 1 maps, the view weights C~) as max, exp and sum
    (`fastpath.softmax`): onnxruntime transposes around its last-axis kernel (0.20 -> 0.02 ms and 0.12 -> 0.03 ms).
  * The fusion over views and F_A's input channels-last (`Generator._fuse_channels_last`): the gathers' own layout;
    onnxruntime folds the one transpose left before each convolution into its channels-last reorder. Transposes
    at N=1: 0.63 -> 0.14 ms.
  * Each view warped by its own four row gathers with its fusion weight C~_j in the corner weights
    (`Generator.warp_and_fuse`, `fastpath.warp_views_rows`): no (V, h, w, C) tensor to split and weight again
    (Mul + Add + Split at N=1: 3.69 -> 2.86 ms at one thread). A/B against the commit before it: 1.03x N=0, 1.04x N=1.
  * F_G's 1x1 appearance mix as one convolution per half (no 128-channel concat): its nodes 0.82 -> 0.75 ms at N=0.
  * Whole session, A/B against its start (1b0f604; `python benchmarks/ab_cpu.py --old <start> --refs 0 1 3
    --frames 800`, `results/ab_cpu_speed_session27.json`): **1.05x N=0** (9.68 -> 9.19 ms p50), **1.10x N=1**
    (12.25 -> 11.11 ms), **1.14x N=3** (19.84 -> 17.42 ms).
  * `odecam bench --preset lite --checkpoint odecam/assets/default.safetensors --backend onnxruntime --refs 0 1
    --frames 600`, side by side with the session's start run the same way from its checkout a minute before
    (`results/cpu_default256_speed_s15_start.json`, `results/cpu_default256_speed_s15.json`): **N=0 10.3 -> 9.4 ms
    p50 (91 -> 101 fps), N=1 13.9 -> 12.8 ms (70 -> 77 fps)**, 4.7x / 5.8x the floor. An hour earlier one run
    measured the 3x3 convolutions themselves at 150 GFLOP/s against 218 (the floor 2.8 ms against 1.9): the
    VM shares its L3 (32 MB) and cores with other tenants, and this evening's runs moved by more than the
    session's gains (the same old checkout's N=0 p50 in the A/Bs: 9.6 to 14.4 ms). Two earlier runs the same
    evening: N=0 8.1 / 9.7 ms, N=1 10.4 / 10.9 ms (96 / 92 fps p50). Targets (150 / 100 fps, 3x the floor): **NOT met**.
  * Glass to glass on the idle machine (`python benchmarks/latency_live.py --runs 2 --breakdown`,
    `results/latency_live.json`): extra p50 **+4.1 / +4.5 ms** (<= 5: met), p95 **+12.0 / +10.3 ms** (<= 15: met).
  * Measured and not adopted: OpenCV's `remap` on 64-channel features (one call, 0.13 ms, but it switches to
    fixed-point weights above 4 channels: 0.023 error; 16 calls of 4 channels plus the merge: slower than the
    gathers); torch's `grid_sample` on them (0.53 ms per view, no faster); one gather of four corners with a
    ReduceSum, a batched MatMul or slices instead of four gathers (0.72-1.09 ms against 0.61); onnxruntime's
    `session.set_denormal_as_zero` (no change); F_E's 2-channel output convolution (padded to 16 channels in the
    blocked layout: 0.09 ms per ODE step at N=1) as `conv_taps` (A/B at one thread 0.99x / 1.00x); F_K on one sleeping thread beside a spinning frame session
    (interleaved whole-path A/B: p50 0.97-1.0x, not kept). Found and left: on this VM the frame graph and the
    image-skip tail slow each other when run back to back (each touches several MB; in isolation 6.1 + 0.9 ms,
    in sequence 11.6 + 2.4 ms in a micro-benchmark, about 1 ms in the real path). Running the tail's warp and
    fusion on a second thread while onnxruntime runs (it would need the frame graph split after F_C and the
    ODE; simulated first in the real per-frame path with the previous frame's fields, interleaved): N=1 p50
    10.8 -> 14.6 ms, N=0 8.7 -> 10.7 ms (OpenCV on one thread: 11.6 -> 14.3): a third busy thread fights
    onnxruntime's two for the two cores. Not built.
* Sixteenth session (2026-12-01, night): **blink retargeting added to the per-frame path** (issue 9's eyes; see
  EVALUATION.md, "Blink retargeting in the engine"). What it costs here:
  * The `eyes` stage (two eye crops of the full-resolution frame and an 8.9 k-weight network in a one-thread
    onnxruntime session, then the running median): 0.19 ms alone, 0.70 ms right after a frame graph (cold caches:
    the keypoint indexing in torch 0.16, the crops 0.19, the onnxruntime run 0.33, a 150-value median 0.12 ms); the
    keypoints read from NumPy and the median refreshed every 10 readings brought it to 0.53 ms there, and `odecam
    demo` / `odecam bench --source astronaut` report 0.4 ms p50 (`results/cpu_default256_blink_source.json`:
    N=0 8.7 ms p50 with it; `results/cpu_default256_blink_random.json`, the random avatar right after: 9.2 ms,
    no eyes read: the VM's noise is larger than the stage). `odecam bench` keeps its random-pixel avatar, so its
    figures do not include the stage unless `--source` is given. The blend of the open and closed avatar states
    runs only when the blink amount changes (one multiply-add per input that differs).
  * Glass to glass (`python benchmarks/latency_live.py`), interleaved runs with `--no-blink` and with blinks, idle
    machine (load 1.1-1.4): extra p50 +4.5 / +4.3 / +4.3 / +5.4 / +4.2 ms without, +5.2 / +4.8 / +7.3 / +4.9 /
    +4.6 ms with; p95 +9.7 to +14.1 ms in all. The in-process per-frame split (the same command, each frame's
    capture-to-sink time minus its own F_K + eyes + frame graph time) gives the same extra with and without
    blinks: p50 4.13 / 4.52 ms without, 4.16 / 4.44 ms with (the eyes stage is inside the model's keypoints
    stage: 2.7-2.8 ms against 2.1-2.3). The recorded run (`results/latency_live.json`, at the session's end, the
    model itself slower then: 13.5 / 14.9 ms p50 against 11-12 before): extra p50 **+7.5 / +6.3 ms (NOT met)**,
    p95 +14.6 / +15.3 ms; its per-frame split: extra p50 4.1 ms, p95 18.9 ms. The p50 bar (5 ms) holds in most
    runs on this VM and fails in some: its headline difference of two p50s moves by more than a millisecond
    from run to run.
* Seventeenth session (2026-12-02): **the face detector off the latency path** (glass to glass). The per-frame
  split of the last recorded run put the rest of the extra in the framing: dlib's detector ran inline on every
  third frame, 8-15 ms on carphone's frames scaled to 320 rows (framing p95 15.3 ms), so a third of the frames
  carried it and the capture-to-sink p50 sat above most of the fast frames. Two changes
  (`odecam/realtime/framing.py`):
  * the tracker searches a window of 2.4 face sides around the face it follows (`detect_faces_near`), cut from
    the whole frame's image pyramid at the level one above where dlib found the face, its corner on a 48-pixel
    grid, so the detector sees the same pixels and HOG cells: the whole frame's box size in 259 of 261 searches on
    9 clips 3 frames on (windows resized straight from the frame landed a pyramid level larger in 10-20%), 2.0 ms
    median against 8.1 ms; the whole frame again when the window finds nothing. The grey conversion now comes
    before the resize (1.3 -> 0.4 ms for a 640 x 360 frame);
  * live runs the detection after the frame went out (`FaceFramer.process(frame, defer_detection=True)`,
    `detect_deferred()`): its result acts from the next frame on, in the wait for the next frame (`face_search`
    in the stages, 6-8 ms after a frame: cold caches and onnxruntime's spinning threads beside it). The first
    frame of a track still detects at once. `eval --protocol animation` and `demo` frame the same way
    (EVALUATION.md: carphone mouth r 0.798 -> 0.802, yaw r 0.845 -> 0.872, face rate 0.967 both; d6, d18 unchanged).
  * `python benchmarks/latency_live.py --runs 3 --breakdown` (`results/latency_live.json`, idle machine, load
    0.2-0.8): extra p50 **+2.9 / +3.1 / +3.5 ms** (<= 5: met), p95 **+1.0 / +1.1 / +2.0 ms** (<= 15: met);
    capture-to-sink p50 13.8-14.7 ms against 17.7-21.9 ms in this session's first runs of the previous code
    (extra p50 +5.5 / +6.3, p95 +13.9 / +14.5 then); per-frame split: extra p50 3.4 ms, p95 4.5 ms (4.4 / 18.6
    before). Framing p50 0.85 ms, p95 1.1-1.3 ms (15.3 before).
  * The crop's shrink to 256 px on the latency path: OpenCV's `INTER_AREA` at a ratio that is not an integer takes
    its generic path, 0.9 ms for a 300 px crop, 1.6 ms for 480 px, 2.3-2.4 ms for 587-700 px, 4.0 ms for 1000
    px (a 1080p webcam's face crop). `framing.area_downscale` (bilinear to 512, then the exact 2 x 2 average of
    the integer-factor path; a k x k average first from 1024 px) takes 0.3-0.6 ms and stays within 52-58 dB
    PSNR of `INTER_AREA` on faces; F_K's keypoints move by at most 0.07 / 0.12 / 0.32 px (d6, d18, carphone
    blown up to 700 px; 60 frames each). The framing stage of a 1080p frame (carphone blown up, face crop
    about 590 px): 2.4-2.7 -> 0.9-1.0 ms p50.
  * `odecam bench --preset lite --checkpoint odecam/assets/default.safetensors --backend onnxruntime --refs 0 1
    --frames 400` at the session's start (`results/cpu_default256_speed_s17.json`, quiet machine): **N=0 8.2 ms
    p50 (122 fps, 4.4x the floor), N=1 10.2 ms (98 fps, 5.0x)**. Targets (150 / 100 fps, 3x the floor): **NOT met**.
    In `odecam live` at 30 fps (carphone, 300 frames, `ODECAM_SPIN` on / auto / off, two rounds): capture-to-sink
    p50 13.7-14.0 / 14.4-19.9 / 15.7-15.8 ms, the frame graph 8.1-8.3 / 8.5-12.8 / 10.0-10.1 ms: spinning pays
    at 30 fps on the idle machine too (auto spun 63% of the time).
  * Measured, not adopted: the last up-block of F_G (nearest 2x upsample, depthwise 3x3, pointwise 64 -> 32, BN,
    ReLU) and the head computed at 64 x 64 in its four output phases (`fastpath._phase_kernel`, the same function
    to 6e-8) instead of at 128 x 128: 1.59-1.70 -> 1.48-1.52 ms for that stage in onnxruntime (2 threads), about
    2% of a frame, for a two-level phase order in the tail. OpenCV's threads for the tail (1 against 2):
    no difference at N=0 or N=1.
* Eighteenth session (2026-12-02): no speed change to the per-frame path; the VM ran slow all session.
  * `odecam bench --preset lite --checkpoint odecam/assets/default.safetensors --backend onnxruntime --refs 0 1
    --frames 400` (`results/cpu_default256_speed_s18.json`, the session's quietest moment): **N=0 9.2 ms p50
    (109 fps, 4.3x the floor), N=1 13.1 ms (76 fps, 5.6x)**; earlier runs this session 14.3 / 17.4 and 16.2 / 19.1
    ms. The 3x3 convolutions themselves measured 191 GFLOP/s (148-165 in the slow runs) against 208 last session:
    the same code ran slower (no code of the per-frame path changed; the graphs' cache key, which digests that
    code, is the same). Targets (150 / 100 fps, 3x the floor): **NOT met**.
  * Start-up: the blink reader's ONNX graph was built node by node with the `onnx` package on every start, and
    importing `onnx` (its `ml_dtypes`) took 0.8 s; the graph is now cached beside the exported graphs (keyed by its
    weights and code), so a warm start never imports `onnx`: `odecam demo` 8.0 -> 5.7-6.3 s wall (2.6 s of it the
    120 frames; 21.6 s with an empty cache).
  * The framer's search for a face too small for 320 rows (`FramingConfig.far_height` = 640; a 1080p frame with
    a 147 px face, this VM): whole frame at 320 rows 14.4 ms, at 640 rows 55 ms (on the first miss and every
    fourth after it, after the frame went out), the tracked face's window at 640 rows 8.9 ms (every third frame,
    after the frame went out). Frames with a face found at 320 rows are unchanged. The detector's input then
    shrank by bilinear-to-twice plus the exact 2 x 2 average instead of `INTER_AREA` at a non-integer ratio (its
    slow path: 2.2 -> 0.3 ms for 1080p to 320 rows): 10.8 / 40.5 / 4.8 ms for the three (carphone, d6, d18
    evals identical).
  * Glass to glass with this session's framing (`python benchmarks/latency_live.py --runs 3 --breakdown`,
    `results/latency_live.json`, idle, load 0.7-0.9): extra p50 **+3.4 / +3.2 / +3.4 ms** (<= 5: met), p95
    **+1.9 / +3.2 / +2.3 ms** (<= 15: met); capture-to-sink p50 14.5-14.8 ms; `face_search` 8.1-8.2 ms after each
    detecting frame.
  * Measured, not adopted: the tail's sampling maps upsampled by `cv2.warpAffine` on the displacement (then the
    identity added) instead of two matrix products: 0.6-0.9 ms against 0.25-0.3 ms for two views, and 0.05 px
    off. The tail's parts at 1 thread, N=1 (this VM, quiet moment): phase copy 0.25, channel split 0.12, maps
    0.43, two remaps 0.60, fusion 0.22, blend 0.20 ms.
* Nineteenth session (2026-12-02): the default blurs F_G's skip mask M (`generator.mask_blur` 1, a 7-tap separable
  Gaussian in the onnxruntime tail; the open mouth's pixelated patch, EVALUATION.md), and with nobody in view
  `live`, `serve` and `send` stop F_K and repeat the avatar at rest (no model run while away).
  * A/B against the session's start (`python benchmarks/ab_cpu.py --old <c51cfcd> --refs 0 1 --frames 400`,
    `results/ab_cpu_speed_mask_blur.json`, interleaved, a slow moment of the VM): **0.99x N=0** (11.90 -> 11.97 ms
    p50), **1.00x N=1** (13.90 -> 13.91 ms); the blur alone: 0.07 ms for 256 x 256 (`cv2.sepFilter2D`). The
    frames differ where M is not 1 (max abs 0.2 at the lips; 0.09-0.14% mean on carphone's open mouths): a model
    change, measured in EVALUATION.md.
  * `odecam bench --preset lite --checkpoint odecam/assets/default.safetensors --backend onnxruntime --refs 0 1
    --frames 400` (`results/cpu_default256_speed_s19.json`, load 0.6, the VM in a slow phase again: the session's
    start code ran 11.9 / 13.9 ms in the A/B above against 8.2 / 10.2 ms two sessions ago): **N=0 11.5 ms p50 (87
    fps, 5.6x the floor), N=1 11.6 ms (86 fps, 5.2x)**. Targets (150 / 100 fps, 3x the floor): **NOT met**.
  * Glass to glass with the rest logic in `live` (`python benchmarks/latency_live.py --runs 3 --breakdown`,
    `results/latency_live.json`, load 0.6-1.0): extra p50 **+3.4 / +3.6 / +3.1 ms** (<= 5: met), p95 **+1.7 / +3.0 /
    +3.6 ms** (<= 15: met).
* Twentieth session (2026-12-02): no change to the default per-frame path. New, opt-in: `--paste-back` (`live`,
  `demo`, `serve`, `receive`) blends the rendered square back into the avatar's photo, one `warpAffine` and one
  `blendLinear` of the square's box a frame: **0.25-1.2 ms** (`python benchmarks/paste_back.py`,
  `results/paste_back.json`; 0.57 ms for the astronaut on a 1280 x 720 canvas, 1.16-1.19 ms on 1920 x 1080), the
  `paste` stage of `live --stats`.
  * `odecam bench --preset lite --checkpoint odecam/assets/default.safetensors --backend onnxruntime --refs 0 1
    --frames 400` (`results/cpu_default256_speed_s20.json`, load 0.4): **N=0 10.0 ms p50 (99.5 fps, 4.5x the
    floor), N=1 12.8 ms (78 fps, 5.2x)**; the VM's speed moved 2x within minutes this session (a scratch frame
    graph ran 4.4 then 11.9 ms in back-to-back runs). Targets (150 / 100 fps, 3x the floor): **NOT met**.
  * Prototyped, not built: the N=0 frame graph split at its two 64-channel feature warps (three sessions, `cv2.remap`
    between them) ran 1.09-1.11x faster than the one graph (interleaved), but `remap` interpolates a many-channel
    image with fixed-point weights (the head's phases off by 0.017); exact in 3-4-channel chunks, which cost more
    than the split saves (EVALUATION.md).
* Twenty-first session (2026-12-02): two changes to what a frame computes, neither costing time.
  * The image skip's margin (`generator.skip_margin` 0.125 in the default: the view images reach 32 px beyond the
    square, the photo's own surroundings, so a far nod reads picture, not black): the OpenCV tail remaps from the
    larger image with its maps shifted by the margin, the same number of output pixels. Interleaved A/B against
    72dcb50 (`python benchmarks/ab_cpu.py --old <72dcb50> --refs 0 1 --frames 400`,
    `results/ab_cpu_speed_skip_margin.json`): **1.00x N=0** (9.49 -> 9.52 ms p50), **1.01x N=1** (13.23 -> 13.17).
  * `--paste-back` anchors the motion field at the square's edges (`generator.edge_anchor` 0.25): one multiply of
    the (V, 2, 32, 32) field, a constant window inside the graph. The paste itself: 0.29-1.47 ms a frame
    (`results/paste_back.json`, re-timed); `live --video carphone --paste-back --stats`: paste 0.52 ms p50 of a
    14.1 ms capture-to-output p50 on a 1280 x 720 canvas.
  * The shipped default anchors its field at the square's edges (`generator.edge_anchor` 0.1): the same multiply.
  * `odecam bench --preset lite --checkpoint odecam/assets/default.safetensors --backend onnxruntime --refs 0 1
    --frames 400` with the default as shipped (`results/cpu_default256_speed_s21.json`, load 1.0): **N=0 10.2 ms
    p50 (98.4 fps, 5.1x the floor), N=1 12.7 ms (78.6 fps, 5.9x)**; a run 30 minutes earlier, before the 0.1
    anchor, gave 9.5 / 13.4 ms (the VM's noise). Targets (150 / 100 fps, 3x the floor): **NOT met**.
"""


def speed_section() -> list[str]:
    """Issue 12 (per-frame speed): A/B against the previous code (``ab_cpu.json``), the op profile
    (``profile_ort.json``) and glass-to-glass latency of ``odecam live`` (``latency_live.json``)."""
    lines: list[str] = []
    ab, prof, lat = (RESULTS / "ab_cpu.json", RESULTS / "profile_ort.json", RESULTS / "latency_live.json")
    if ab.is_file() or prof.is_file() or lat.is_file():
        lines += ["## Per-frame speed (issue 12)", "", SPEED_NOTES, ""]
    for f in sorted(RESULTS.glob("cpu*speed*.json")):  # odecam bench runs recorded for issue 12
        lines += cpu_section(f.stem, json.loads(f.read_text()))
    for ab in [ab] + sorted(RESULTS.glob("ab_cpu_speed*.json")):
        if not ab.is_file():
            continue
        d = json.loads(ab.read_text())
        lines += [f"## CPU per-frame path, A/B against the previous code (`results/{ab.name}`)", "",
                  f"* `python benchmarks/ab_cpu.py --old {d.get('old')}`: keypoints + frame graph + uint8 output, old "
                  f"and new alternating frame by frame in one process, {d.get('threads')} threads; load average "
                  f"{d.get('loadavg_start')} -> {d.get('loadavg_end')} ({d.get('machine', 'this machine')})", "",
                  "| preset | N | weights | old p50 ms | old p95 ms | new p50 ms | new p95 ms | speed-up (p50) | "
                  "max abs diff new vs old |", "|---|---|---|---|---|---|---|---|---|"]
        for c in d["cases"]:
            lines.append(f"| lite@{c['size']} | {c['refs']} | {c['weights']} | {c['old_p50_ms']:.2f} | "
                         f"{c['old_p95_ms']:.2f} | {c['new_p50_ms']:.2f} | {c['new_p95_ms']:.2f} | "
                         f"**{c['speedup_p50']:.2f}x** | {c['max_abs_diff']:.1e} |")
        lines.append("")
    for f in sorted(RESULTS.glob("spin_ab*.json")):
        d = json.loads(f.read_text())
        auto = all("auto" in c for c in d["cases"].values())  # files before spin 'auto' have two settings
        lines += [f"## onnxruntime with and without spin-waiting (`results/{f.name}`)", "",
                  f"* `python benchmarks/spin_ab.py --busy {d['busy']}`: the default model, keypoints + frame + tail + "
                  f"uint8, {'the three' if auto else 'both'} settings alternating frame by frame, {d['frames']} frames, "
                  f"{d['busy']} CPU-bound processes beside it; load average at the end {d.get('loadavg_end')}", "",
                  "| case | no spin p50 ms | no spin p95 ms | spin p50 ms | spin p95 ms | speed-up (p50) |"
                  + (" auto p50 ms | auto p95 ms | speed-up (p50) | auto spun |" if auto else ""),
                  "|---|---|---|---|---|---|" + ("---|---|---|---|" if auto else "")]
        for case, c in d["cases"].items():
            row = (f"| {case} | {c['no_spin']['p50_ms']:.2f} | {c['no_spin']['p95_ms']:.2f} | "
                   f"{c['spin']['p50_ms']:.2f} | {c['spin']['p95_ms']:.2f} | **{c['speedup_p50']:.2f}x** |")
            if auto:
                row += (f" {c['auto']['p50_ms']:.2f} | {c['auto']['p95_ms']:.2f} | **{c['auto_speedup_p50']:.2f}x** | "
                        f"{c['auto']['spin_share']:.0%} |")
            lines.append(row)
        lines.append("")
    if prof.is_file():
        d = json.loads(prof.read_text())
        lines += ["## onnxruntime op profile (`results/profile_ort.json`, `python benchmarks/profile_ort.py`)", "",
                  f"* lite at {d['size']} px, {d['weights']} weights, {d['threads']} threads; load average "
                  f"{d.get('loadavg_start')} -> {d.get('loadavg_end')}. Kernel ms per run by op type (top 8); "
                  "`frame_tail` is the frame graph the onnxruntime backend runs (view-image warp and blend in torch; "
                  "`frame` is the exported graph with them inside). "
                  "Each graph is timed in its own session at another moment of a loaded machine: compare shares, "
                  "not wall times (the A/B above is the speed comparison).",
                  ""]
        for label, c in d["cases"].items():
            top = ", ".join(f"{op} {v['ms']:.2f} ({100 * v['share']:.0f}%)" for op, v in list(c["by_op"].items())[:8])
            lines.append(f"* **{label}**: wall p50 {c['wall_ms_p50']:.2f} ms; {top}")
        lines.append("")
    if lat.is_file():
        d = json.loads(lat.read_text())
        lines += ["## Glass to glass: `odecam live --video carphone --stats` (`results/latency_live.json`)", "",
                  "* `python benchmarks/latency_live.py --breakdown`: default model and backend, a recording as the "
                  "sink; targets: capture-to-sink p50 <= model p50 + 5 ms, p95 <= model p95 + 15 ms (idle machine). "
                  f"{d.get('machine_note', '')}", "",
                  "| run | load (1 min) | capture->sink p50 | p95 | model (F_K + frame) p50 | p95 | extra p50 | "
                  "extra p95 |", "|---|---|---|---|---|---|---|---|"]
        for i, r in enumerate(d["runs"]):
            lines.append(f"| {i + 1} | {r['loadavg_before'][0]:.1f} | {r['capture_to_sink_p50_ms']:.1f} | "
                         f"{r['capture_to_sink_p95_ms']:.1f} | {r['model_p50_ms']:.1f} | {r['model_p95_ms']:.1f} | "
                         f"{r['extra_p50_ms']:+.1f} | {r['extra_p95_ms']:+.1f} |")
        b = d.get("breakdown")
        if b:
            lines += ["", f"* per frame (same command in-process, load {b['loadavg_before'][0]:.1f}), p50 / p95 ms: "
                      + ", ".join(f"{k.replace('_', ' ')} {b[k + '_p50_ms']:.1f} / {b[k + '_p95_ms']:.1f}"
                                  for k in ("capture_to_sink", "model", "extra", "other_stages", "outside_stages")),
                      "  (extra = capture-to-sink minus the model's own time of that frame; other stages = framing, "
                      "smoothing, relative motion, conversions, output; outside = waiting between stages)"]
        lines.append("")
    return lines


def write_results_md(path: Path = HERE / "RESULTS.md") -> Path:
    lines = ["# Recorded benchmark results", "",
             "Regenerated by `python benchmarks/results_table.py` from `benchmarks/results/*.json`. CPU numbers come from "
             "`python benchmarks/bench_cpu.py` (`odecam bench`), GPU numbers from `bash benchmarks/gpu_check.sh`. "
             "fps is 1000 / p50 latency of one frame (uint8 frame in, uint8 frame out on the CPU; the per-frame "
             "graph on the GPU), batch 1, random weights. Floor: GFLOPs over the measured 3x3-conv throughput.", ""]
    for f in sorted(RESULTS.glob("*.json")):
        try:
            data = json.loads(f.read_text())
        except json.JSONDecodeError:
            continue
        if not isinstance(data, dict) or "machine" not in data or "runs" not in data:
            continue  # other benchmarks' results (e.g. keypoint_stream.json)
        if data.get("kind") != "gpu" and "conv_throughput" not in data:
            continue  # not an odecam bench record (e.g. load.json); the speed files come in speed_section
        if "speed" in f.stem:
            continue  # issue 12's odecam bench runs: in speed_section
        lines += gpu_section(f.stem, data) if data.get("kind") == "gpu" else cpu_section(f.stem, data)
    lines += speed_section()
    path.write_text("\n".join(lines))
    return path


if __name__ == "__main__":
    print(f"wrote {write_results_md()}")
