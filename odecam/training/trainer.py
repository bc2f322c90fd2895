"""Training as the paper does it: L = L_percep (Eq. 7) + lambda L_equiv (Eq. 8), end to end.

* The ODE is integrated with torchdiffeq (``odeint``, or ``odeint_adjoint`` when ``adjoint``) using the
  fixed-step method and step count of the model config, the ones inference unrolls.
* Checkpoints every ``checkpoint_every`` steps to ``RUN_DIR/last.safetensors`` plus the optimiser state
  ``RUN_DIR/trainer_state.pt`` (tensors only, read back with ``weights_only=True``); a run started again
  on the same ``RUN_DIR`` resumes from there, so an interruption loses at most one interval.
* Loss curves go to ``RUN_DIR/losses.csv`` and ``RUN_DIR/losses.png``.
* Scale-out: under ``torchrun`` the step is wrapped in DistributedDataParallel (gloo on CPU, nccl on GPU);
  rank 0 writes checkpoints and logs.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from odecam.checkpoint import save_checkpoint
from odecam.config import ModelConfig, preset
from odecam.errors import OdecamError
from odecam.model import MotionTransferModel

log = logging.getLogger(__name__)


@dataclass
class LossConfig:
    """Loss weights. ``perceptual`` multiplies the VGG-19 loss (whose layers are weighted 10 each, as FOMM);
    ``l1`` is an optional pixel term (0 in the paper)."""

    perceptual: float = 1.0
    perceptual_scales: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125)
    l1: float = 0.0
    equivariance_value: float = 10.0
    equivariance_jacobian: float = 10.0
    #: landmark-guided F_K (odecam switch): weight of the keypoint-landmark L1 (``landmark_loss``); needs
    #: data with landmarks (``faces:DIR``); 0 = the paper's unsupervised F_K
    landmarks: float = 0.0
    #: synthetic-warp pairs (odecam switch, ``warp_supervision``): weight of the L1 between the source
    #: view's fields (T~ and T) and the known field; ``warp_prob`` of each batch gets such a driving frame
    flow: float = 0.0
    warp_prob: float = 0.25
    warp_rotation: float = 20.0
    #: what the synthetic warp moves: "image" (the whole frame, a camera motion) or "head" (a disc around the
    #: face, faded to a still background; items without landmarks move whole)
    warp_region: str = "image"
    #: expression-flow supervision (odecam switch, ``warp_supervision.expression_flow_loss``): weight of
    #: the L1 between the source view's fields (T~ and T) and the exact field of a landmark-guided
    #: synthetic driving frame (mouth opening, blink, head turn; items' ``driving_field``); 0 = off
    expression_flow: float = 0.0
    #: mouth-region loss (odecam switch, ``mouth_loss``): the frame's perceptual and L1 terms again on a crop
    #: around the driving frame's mouth landmarks, times this weight; needs landmarks; 0 = off
    mouth: float = 0.0
    #: keypoint-field consistency (odecam switch, ``keypoint_field_loss``): weight of the L1 between the
    #: fields (T~ and T) sampled at the driving keypoints and each view's keypoint displacement
    #: Delta_i = x_S^i - x_D^i, keypoints detached; 0 = off
    kp_field: float = 0.0


@dataclass
class TrainConfig:
    """What ``odecam train --config`` reads (JSON). ``model`` is a preset name, a full model config dict or
    ``"init"`` (the architecture of ``init_checkpoint``, so a fine-tune of the shipped default follows it when it
    changes); ``model_overrides`` sets dotted fields (``{"evolution.enabled": false}``: the ablations)."""

    model: str | dict[str, Any] = "lite"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    data: list[str] = field(default_factory=lambda: ["procedural"])
    data_repeats: int = 1  # each video counts this many times per epoch (FOMM's num_repeats)
    image_size: int | None = None
    num_refs: int | None = None
    random_refs: bool = False  # each batch uses N drawn uniformly from 0..num_refs, so one model serves any N
    batch_size: int = 4
    steps: int = 1000
    lr: float = 2e-4
    lr_decay_steps: tuple[int, ...] = ()
    checkpoint_every: int = 100
    log_every: int = 10
    num_workers: int = 0
    seed: int = 0
    adjoint: bool = False
    device: str = "auto"
    init_checkpoint: str | None = None
    #: > 0: also keep an exponential moving average of the weights (decay per step, e.g. 0.999 averages over
    #: about the last 1,000 steps), written beside ``last.safetensors`` as ``RUN_DIR/ema.safetensors``; a
    #: checkpoint to evaluate and ship, steadier than the last step's weights. 0 = off
    ema_decay: float = 0.0
    #: fine-tune only these parts: parameter-name prefixes of the model (``["generator.up_blocks",
    #: "generator.final"]``); everything else is frozen (no gradient, batch-norm statistics kept). Empty = all
    train_only: tuple[str, ...] = ()
    loss: LossConfig = field(default_factory=LossConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        bad = set(data) - known
        if bad:
            raise OdecamError(f"unknown training config keys {sorted(bad)}; expected some of {sorted(known)}.")
        data = dict(data)
        if "loss" in data and isinstance(data["loss"], dict):
            lk = {f.name for f in dataclasses.fields(LossConfig)}
            if set(data["loss"]) - lk:
                raise OdecamError(f"unknown loss config keys {sorted(set(data['loss']) - lk)}.")
            loss = dict(data["loss"])
            if "perceptual_scales" in loss:
                loss["perceptual_scales"] = tuple(loss["perceptual_scales"])
            data["loss"] = LossConfig(**loss)
            if data["loss"].warp_region not in ("image", "head"):
                raise OdecamError(f"loss.warp_region {data['loss'].warp_region!r} is not one of 'image', 'head'.")
        if "lr_decay_steps" in data:
            data["lr_decay_steps"] = tuple(data["lr_decay_steps"])
        if isinstance(data.get("data"), str):
            data["data"] = [data["data"]]
        if "train_only" in data:
            data["train_only"] = (data["train_only"],) if isinstance(data["train_only"], str) else tuple(data["train_only"])
        return cls(**data)

    @classmethod
    def load(cls, spec: str) -> "TrainConfig":
        """A JSON file, or a preset name (train that preset with default settings)."""
        p = Path(spec)
        if p.exists():
            try:
                return cls.from_dict(json.loads(p.read_text()))
            except json.JSONDecodeError as exc:
                raise OdecamError(f"training config {spec!r} is not valid JSON ({exc}).") from None
        try:
            preset(spec)
        except ValueError:
            raise OdecamError(f"training config {spec!r} is neither a JSON file nor a preset name "
                              "(lite, vox256, tiny).") from None
        return cls(model=spec)

    def model_config(self) -> ModelConfig:
        if self.model == "init":  # the architecture of the checkpoint the run starts from (e.g. the shipped default)
            if not self.init_checkpoint:
                raise OdecamError('model "init" takes the architecture of init_checkpoint; set init_checkpoint too.')
            from odecam.checkpoint import read_checkpoint

            cfg = read_checkpoint(self.init_checkpoint)[0]
        else:
            cfg = preset(self.model) if isinstance(self.model, str) else ModelConfig.from_dict(self.model)
        changes = dict(self.model_overrides)
        if self.image_size is not None:
            changes["image_size"] = self.image_size
        if self.num_refs is not None:
            changes["num_refs"] = self.num_refs
        if self.adjoint:
            changes["evolution.adjoint"] = True
        return cfg.replace(**changes) if changes else cfg


class TrainingStep(nn.Module):
    """One forward pass and its losses; the module DistributedDataParallel wraps."""

    def __init__(self, model: MotionTransferModel, loss: LossConfig) -> None:
        super().__init__()
        from odecam.training.losses import EquivarianceConfig, VGG19Perceptual

        self.model = model
        self.loss_cfg = loss
        self.vgg = VGG19Perceptual(scales=loss.perceptual_scales) if loss.perceptual > 0 else None
        self.eq_cfg = EquivarianceConfig(weight_value=loss.equivariance_value,
                                         weight_jacobian=loss.equivariance_jacobian)

    def forward(self, source: torch.Tensor, driving: torch.Tensor, refs: torch.Tensor | None,
                source_landmarks: torch.Tensor | None = None,
                driving_landmarks: torch.Tensor | None = None,
                driving_field: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """source, driving (B, 3, S, S); refs (B, N, 3, S, S) or None; landmarks (B, 68, 2) with NaN rows
        where unknown (only used when ``loss.landmarks > 0``); driving_field (B, 2, G, G), NaN where
        unknown (only used when ``loss.expression_flow > 0``)."""
        from odecam.training.losses import equivariance_loss

        affine = None
        if self.loss_cfg.flow > 0 and self.loss_cfg.warp_prob > 0:
            driving, driving_landmarks, affine, region = self._warp_pairs(source, driving, source_landmarks,
                                                                          driving_landmarks)
        out = self.model(source, driving, refs, solver="torchdiffeq")
        pred = out["prediction"]
        losses: dict[str, torch.Tensor] = {}
        v = out["coarse"].shape[0] // source.shape[0]  # views per item; the source view comes first
        if affine is not None:
            from odecam.training.warp_supervision import flow_loss

            k = affine.shape[0]
            src_views = torch.arange(k, device=source.device) * v
            losses["flow"] = self.loss_cfg.flow * 0.5 * (flow_loss(out["coarse"][src_views], affine, region)
                                                         + flow_loss(out["displacement"][src_views], affine, region))
        if self.loss_cfg.expression_flow > 0 and driving_field is not None:
            from odecam.training.warp_supervision import expression_flow_loss

            k = affine.shape[0] if affine is not None else 0  # those driving frames were replaced by warps
            src_views = torch.arange(k, source.shape[0], device=source.device) * v
            tgt = driving_field[k:].to(out["coarse"].dtype)
            losses["expression_flow"] = self.loss_cfg.expression_flow * 0.5 * (
                expression_flow_loss(out["coarse"][src_views], tgt)
                + expression_flow_loss(out["displacement"][src_views], tgt))
        if self.loss_cfg.kp_field > 0:
            from odecam.training.keypoint_field_loss import keypoint_field_loss

            losses["kp_field"] = self.loss_cfg.kp_field * 0.5 * (
                keypoint_field_loss(out["coarse"], out["kp_views"], out["kp_driving"])
                + keypoint_field_loss(out["displacement"], out["kp_views"], out["kp_driving"]))
        if self.vgg is not None:
            losses["perceptual"] = self.loss_cfg.perceptual * self.vgg(pred, driving)
        if self.loss_cfg.l1 > 0:
            losses["l1"] = self.loss_cfg.l1 * (pred - driving).abs().mean()
        if self.loss_cfg.mouth > 0 and driving_landmarks is not None:
            from odecam.training.mouth_loss import mouth_loss

            losses["mouth"] = self.loss_cfg.mouth * mouth_loss(
                pred, driving, driving_landmarks, self.vgg, self.loss_cfg.perceptual, self.loss_cfg.l1)
        if self.loss_cfg.equivariance_value > 0 or self.loss_cfg.equivariance_jacobian > 0:
            kp = {"value": out["kp_driving"]}
            if "jacobian_driving" in out:
                kp["jacobian"] = out["jacobian_driving"]
            eq = equivariance_loss(self.model.kp_detector, driving, kp=kp, config=self.eq_cfg)
            losses["equivariance"] = eq["loss"]
        if self.loss_cfg.landmarks > 0 and source_landmarks is not None and driving_landmarks is not None:
            from odecam.training.landmark_loss import landmark_loss

            ls, _ = landmark_loss(out["kp_source"], source_landmarks)
            ld, _ = landmark_loss(out["kp_driving"], driving_landmarks)
            losses["landmarks"] = self.loss_cfg.landmarks * 0.5 * (ls + ld)
        losses["total"] = sum(losses.values())
        losses["l1_metric"] = (pred.detach() - driving).abs().mean()
        return losses

    def _warp_pairs(self, source: torch.Tensor, driving: torch.Tensor, source_landmarks: torch.Tensor | None,
                    driving_landmarks: torch.Tensor | None):
        """Replace the first round(B * warp_prob) driving frames by similarity warps of their sources.

        Returns (driving, driving landmarks, affine (k, 2, 3) or None when k = 0, head region (k, 4) or None)."""
        from odecam.training.warp_supervision import WarpPairConfig, make_warp_pairs

        k = int(round(source.shape[0] * self.loss_cfg.warp_prob))
        if k == 0:
            return driving, driving_landmarks, None, None
        cfg = WarpPairConfig(prob=self.loss_cfg.warp_prob, max_rotation=self.loss_cfg.warp_rotation)
        lm_s = source_landmarks[:k] if source_landmarks is not None else None
        warped, lm_w, affine, region = make_warp_pairs(source[:k], lm_s, cfg,
                                                       head_only=self.loss_cfg.warp_region == "head")
        driving = torch.cat([warped, driving[k:]], 0)
        if driving_landmarks is not None and lm_w is not None:
            driving_landmarks = torch.cat([lm_w.to(driving_landmarks.dtype), driving_landmarks[k:]], 0)
        return driving, driving_landmarks, affine, region


def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(name)


def _batches(loader: DataLoader, sampler: RandomSampler) -> Iterator[dict[str, torch.Tensor]]:
    while True:
        yield from loader


def weights_digest(model: nn.Module) -> str:
    """SHA-256 over every parameter and buffer, in name order: equal digests = identical weights."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def freeze_except(model: nn.Module, prefixes: Sequence[str]) -> list[nn.Module]:
    """Freeze every parameter of ``model`` whose name starts with none of ``prefixes`` (nothing when empty)
    -> the frozen submodules that own parameters (to run in eval mode: their batch-norm statistics stay)."""
    if not prefixes:
        return []
    names = [n for n, _ in model.named_parameters()]
    unknown = [p for p in prefixes if not any(n.startswith(p) for n in names)]
    if unknown:
        raise OdecamError(f"train_only names {unknown}, which match no parameter of the model; use prefixes such "
                          f"as 'generator.up_blocks' or 'generator.appearance'.")
    for name, param in model.named_parameters():
        param.requires_grad_(any(name.startswith(p) for p in prefixes))
    owners = ([p.requires_grad for p in m.parameters(recurse=False)] for m in model.modules())
    return [m for m, grads in zip(model.modules(), owners) if grads and not any(grads)]


class Trainer:
    """Builds the model, data and optimiser from a :class:`TrainConfig` and runs (or resumes) a run."""

    def __init__(self, cfg: TrainConfig, run_dir: str | Path, dataset: Dataset | None = None,
                 progress: bool = True) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = _device(cfg.device, local_rank)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.is_main = self.rank == 0
        self.progress = progress and self.is_main
        torch.manual_seed(cfg.seed)
        self.model_cfg = cfg.model_config()
        self.model = MotionTransferModel(self.model_cfg).to(self.device)
        if cfg.loss.landmarks > 0:  # landmark-guided F_K: checkpoints say which keypoint sits on what
            from odecam.training.landmark_loss import LANDMARK_GROUPS

            self.model.keypoint_roles = tuple(name for name, _ in LANDMARK_GROUPS)  # the first M of K keypoints
        if cfg.init_checkpoint:
            from odecam.checkpoint import check_state_dict, keypoint_roles, read_checkpoint

            _, tensors, meta = read_checkpoint(cfg.init_checkpoint)
            check_state_dict(self.model, tensors, f"init checkpoint {cfg.init_checkpoint!r}")
            self.model.load_state_dict(tensors)
            if not self.model.keypoint_roles:  # a fine-tune keeps what its start's keypoints sit on
                self.model.keypoint_roles = keypoint_roles(meta, self.model_cfg.keypoints.num_kp,
                                                           cfg.init_checkpoint)
        self.frozen = freeze_except(self.model, cfg.train_only)
        self.step_module = TrainingStep(self.model, cfg.loss).to(self.device)
        self.dataset = dataset if dataset is not None else self._build_dataset()
        if len(self.dataset) == 0:  # type: ignore[arg-type]
            raise OdecamError("the training dataset is empty; pass --data with videos, 'procedural' or 'stills'.")
        self.optimizer = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=cfg.lr,
                                          betas=(0.5, 0.999))
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, list(cfg.lr_decay_steps), gamma=0.1)
        self.step = 0
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._resume()
        self.ema = WeightAverage(self.model, cfg.ema_decay, self.run_dir / "ema.safetensors") if cfg.ema_decay else None
        if self.world > 1:
            self.wrapped: nn.Module = nn.parallel.DistributedDataParallel(
                self.step_module, device_ids=[local_rank] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        else:
            self.wrapped = self.step_module

    # -- setup -----------------------------------------------------------------------------------
    def _build_dataset(self) -> Dataset:
        from odecam.training.datasets import DatasetError, build_dataset

        try:
            return build_dataset(self.cfg.data, split="train", image_size=self.model_cfg.image_size,
                                 num_refs=self.model_cfg.num_refs, seed=self.cfg.seed,
                                 repeats=self.cfg.data_repeats)
        except DatasetError as exc:
            raise OdecamError(str(exc)) from None
        except TypeError:  # specs without videos take no repeats
            return build_dataset(self.cfg.data, split="train", image_size=self.model_cfg.image_size,
                                 num_refs=self.model_cfg.num_refs, seed=self.cfg.seed)

    def _state_path(self) -> Path:
        return self.run_dir / "trainer_state.pt"

    def _resume(self) -> None:
        state_path, weights = self._state_path(), self.run_dir / "last.safetensors"
        if not (state_path.exists() and weights.exists()):
            return
        from odecam.checkpoint import check_state_dict, read_checkpoint

        _, tensors, _ = read_checkpoint(weights)
        check_state_dict(self.model, tensors, f"checkpoint {str(weights)!r}")
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(tensors)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        torch.set_rng_state(state["rng"])
        if self.is_main:
            print(f"odecam train: resumed {self.run_dir} at step {self.step}")

    def save(self) -> None:
        """Write last.safetensors and trainer_state.pt (atomically) and refresh the loss plot."""
        if not self.is_main:
            return
        save_checkpoint(self.model, self.run_dir / "last.safetensors",
                        extra={"step": str(self.step), "trained_on": "+".join(self.cfg.data)})
        tmp = self._state_path().with_suffix(".tmp")
        torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                    "step": self.step, "rng": torch.get_rng_state()}, tmp)
        tmp.replace(self._state_path())
        if self.ema is not None:
            self.ema.save(self.model, {"step": str(self.step), "trained_on": "+".join(self.cfg.data),
                                       "ema_decay": str(self.cfg.ema_decay)})
        (self.run_dir / "train_config.json").write_text(json.dumps(dataclasses.asdict(self.cfg), indent=2) + "\n")
        plot_losses(self.run_dir / "losses.csv", self.run_dir / "losses.png")

    # -- loop ------------------------------------------------------------------------------------
    def _loader(self) -> tuple[DataLoader, RandomSampler]:
        g = torch.Generator().manual_seed(self.cfg.seed * 1000 + self.rank + self.step)
        sampler = RandomSampler(self.dataset, replacement=True, num_samples=10 ** 9, generator=g)
        loader = DataLoader(self.dataset, batch_size=self.cfg.batch_size, sampler=sampler,
                            num_workers=self.cfg.num_workers, drop_last=True,
                            persistent_workers=self.cfg.num_workers > 0)
        return loader, sampler

    def train(self, max_steps: int | None = None) -> dict[str, float]:
        """Run until ``cfg.steps`` (or ``max_steps`` more steps, for tests). Returns the last losses."""
        from tqdm import tqdm

        end = self.cfg.steps if max_steps is None else min(self.cfg.steps, self.step + max_steps)
        loader, sampler = self._loader()
        batches = _batches(loader, sampler)
        csv_path = self.run_dir / "losses.csv"
        fields = ["step", "total", "perceptual", "l1", "equivariance", "landmarks", "flow", "expression_flow", "mouth",
                  "kp_field", "l1_metric", "lr", "seconds"]
        if self.is_main:
            _open_loss_log(csv_path, fields)
        self.model.train()
        for module in self.frozen:  # frozen parts keep their batch-norm statistics
            module.eval()
        bar = tqdm(total=end, initial=self.step, desc="training", unit="step", disable=not self.progress)
        last: dict[str, float] = {}
        t0 = time.perf_counter()
        try:
            while self.step < end:
                batch = next(batches)
                src = batch["source"].to(self.device)
                drv = batch["driving"].to(self.device)
                refs = batch["refs"].to(self.device)
                if self.cfg.random_refs and refs.shape[1] > 0:
                    refs = refs[:, : int(torch.randint(0, refs.shape[1] + 1, ()))]
                refs = refs if refs.shape[1] > 0 else None
                lm_s, lm_d = batch.get("source_landmarks"), batch.get("driving_landmarks")
                fld = batch.get("driving_field")
                if lm_s is not None and lm_d is not None:
                    losses = self.wrapped(src, drv, refs, lm_s.to(self.device), lm_d.to(self.device),
                                          fld.to(self.device) if fld is not None else None)
                else:
                    losses = self.wrapped(src, drv, refs)
                if not torch.isfinite(losses["total"]):
                    log.warning("non-finite loss at step %d; batch skipped", self.step)
                    self.optimizer.zero_grad(set_to_none=True)
                    continue
                self.optimizer.zero_grad(set_to_none=True)
                losses["total"].backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 10.0)
                self.optimizer.step()
                self.scheduler.step()
                self.step += 1
                if self.ema is not None:
                    self.ema.update(self.model)
                last = {k: float(v.detach()) for k, v in losses.items()}
                bar.update(1)
                bar.set_postfix(loss=f"{last['total']:.3f}", l1=f"{last['l1_metric']:.3f}")
                if self.is_main and (self.step % self.cfg.log_every == 0 or self.step == end):
                    with open(csv_path, "a", newline="") as f:
                        csv.writer(f).writerow([self.step] + [f"{last.get(k, float('nan')):.6f}" for k in fields[1:-2]]
                                               + [f"{self.scheduler.get_last_lr()[0]:.3g}", f"{time.perf_counter() - t0:.1f}"])
                if self.step % self.cfg.checkpoint_every == 0:
                    self.save()
        except KeyboardInterrupt:
            self.save()
            raise
        finally:
            bar.close()
        if self.world > 1:  # BatchNorm statistics drift per rank after the last step: take rank 0's
            for buf in self.model.buffers():
                dist.broadcast(buf, src=0)
        self.save()
        if self.world > 1:
            (self.run_dir / f"weights_rank{self.rank}.sha256").write_text(weights_digest(self.model) + "\n")
            dist.barrier()
        return last


class WeightAverage:
    """An exponential moving average of a model's weights: after each optimiser step every floating tensor of
    the state dict moves ``1 - decay`` of the way to the model's (buffers such as BatchNorm statistics too);
    integer buffers are copied. Starts from ``path`` when it holds an average of the same model (a resumed
    run), else from the model's weights."""

    def __init__(self, model: nn.Module, decay: float, path: Path) -> None:
        if not 0.0 < decay < 1.0:
            raise OdecamError(f"ema_decay {decay} is out of range; use a value in (0, 1), e.g. 0.999, or 0 for off.")
        self.decay, self.path = decay, path
        state = model.state_dict()
        self.tensors = {k: v.detach().clone() for k, v in state.items()}
        if path.exists():
            from odecam.checkpoint import check_state_dict, read_checkpoint

            _, saved, _ = read_checkpoint(path)
            check_state_dict(model, saved, f"weight average {str(path)!r}")
            for k, v in saved.items():
                self.tensors[k].copy_(v)
        self._float = [k for k, v in self.tensors.items() if v.is_floating_point()]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        state = model.state_dict()
        torch._foreach_lerp_([self.tensors[k] for k in self._float], [state[k].detach() for k in self._float],
                             1.0 - self.decay)
        for k, v in self.tensors.items():
            if not v.is_floating_point():
                v.copy_(state[k])

    def save(self, model: MotionTransferModel, extra: dict[str, str]) -> None:
        save_checkpoint(model, self.path, extra=extra, tensors=self.tensors)


def _open_loss_log(csv_path: Path, fields: list[str]) -> None:
    """Create losses.csv with ``fields`` as header; a run resumed from an older log with fewer columns
    gets its header and rows rewritten with the new columns (empty -> nan), so rows always line up."""
    if not csv_path.exists():
        with open(csv_path, "w", newline="") as f:
            csv.writer(f).writerow(fields)
        return
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(csv_path, newline="") as f:
        header = next(csv.reader(f), [])
    if header == fields:
        return
    tmp = csv_path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields)
        for r in rows:
            w.writerow([r.get(k) if r.get(k) not in (None, "") else "nan" for k in fields])
    tmp.replace(csv_path)


def plot_losses(csv_path: Path, png_path: Path) -> None:
    """Plot every loss column of a losses.csv against step (log scale) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not csv_path.exists():
        return
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in ("total", "perceptual", "l1", "equivariance", "landmarks", "flow", "expression_flow", "mouth",
                "kp_field", "l1_metric"):
        if key not in rows[0]:
            continue
        vals = [float(r[key]) for r in rows]
        if all(math.isnan(v) for v in vals):
            continue
        ax.plot(steps, vals, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(f"odecam training: {csv_path.parent.name}")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
