"""``odecam train``: train a model (paper section 3.4) on videos, procedural talking objects or stills."""

from __future__ import annotations

import argparse

NAME = "train"
HELP = "train a model: odecam train --config lite|CFG.json --data PATH|procedural|stills --out RUN_DIR"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="training config JSON, or a preset name (lite, vox256, tiny)")
    p.add_argument("--data", action="append", help="dataset: FOMM layout folder, folder of videos, a video, "
                   "'procedural[:N]' or 'stills[:PATHS]' (repeatable; overrides the config's)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, losses.csv, losses.png); "
                   "an existing run there is resumed")
    p.add_argument("--steps", type=int, help="total optimisation steps")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--refs", type=int, help="reference views N per sample")
    p.add_argument("--image-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1 ...")
    p.add_argument("--adjoint", action="store_true", help="train F_E with torchdiffeq.odeint_adjoint")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="model config override, e.g. evolution.enabled=false (the ablations), num_refs=3")


def _parse_value(text: str):
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def run(args: argparse.Namespace) -> int:
    from odecam.errors import OdecamError
    from odecam.training.trainer import Trainer, TrainConfig

    cfg = TrainConfig.load(args.config)
    if args.data:
        cfg.data = args.data
    for name, attr in (("steps", "steps"), ("batch_size", "batch_size"), ("refs", "num_refs"),
                       ("image_size", "image_size"), ("lr", "lr"), ("checkpoint_every", "checkpoint_every"),
                       ("device", "device")):
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, attr, value)
    if args.adjoint:
        cfg.adjoint = True
    for item in args.set:
        if "=" not in item:
            raise OdecamError(f"--set {item!r} needs the form FIELD=VALUE, e.g. evolution.enabled=false.")
        k, v = item.split("=", 1)
        cfg.model_overrides[k] = _parse_value(v)
    try:
        cfg.model_config()
    except ValueError as exc:
        raise OdecamError(f"bad model setting: {exc}.") from None
    trainer = Trainer(cfg, args.out)
    if trainer.is_main:
        print(f"odecam train: {trainer.model_cfg.name}, {sum(p.numel() for p in trainer.model.parameters()):,} params, "
              f"data {'+'.join(cfg.data)} ({len(trainer.dataset)} items), {trainer.world} process(es) on {trainer.device}")
    last = trainer.train()
    if trainer.is_main:
        from odecam.training.datasets import skipped_count

        skipped = skipped_count(trainer.dataset)
        if skipped:
            print(f"odecam train: skipped {skipped} corrupt item(s) and went on (see the log for which)")
        print(f"odecam train: step {trainer.step}, loss {last.get('total', float('nan')):.4f}, "
              f"l1 {last.get('l1_metric', float('nan')):.4f}; wrote {trainer.run_dir / 'last.safetensors'}")
    return 0
