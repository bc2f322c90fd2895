"""``odecam train``: train a model (paper section 3.4) on videos, procedural talking objects or stills."""

from __future__ import annotations

import argparse

NAME = "train"
HELP = "train a model: odecam train --config lite|CFG.json --data PATH|procedural|stills --out RUN_DIR"


#: bounds of the training settings (besides the model config, which odecam.config validates)
MAX_BATCH = 4096
MAX_LR = 10.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    from odecam.commands import _common as flags

    p.add_argument("--config", required=True, help="training config JSON, or a preset name (lite, vox256, tiny)")
    p.add_argument("--data", action="append", help="dataset: FOMM layout folder, folder of videos, a video, "
                   "'procedural[:N]' or 'stills[:PATHS]' (repeatable; overrides the config's)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, losses.csv, losses.png); "
                   "an existing run there is resumed")
    p.add_argument("--steps", type=flags.positive_int, help="total optimisation steps")
    p.add_argument("--batch-size", type=flags.int_range(1, MAX_BATCH))
    p.add_argument("--refs", type=flags.num_refs, help="reference views N per sample")
    p.add_argument("--image-size", type=flags.image_size)
    p.add_argument("--lr", type=flags.float_range(0.0, MAX_LR, lo_open=True))
    p.add_argument("--checkpoint-every", type=flags.positive_int)
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


def check_train_config(cfg, source: str) -> None:
    """Range- and type-check the settings of a :class:`~odecam.training.trainer.TrainConfig` (one sentence,
    :class:`~odecam.errors.ConfigError`); its model config is checked by ``cfg.model_config()``."""
    import dataclasses

    from odecam.config import check_float, check_int
    from odecam.errors import ConfigError

    def where(name: str) -> str:
        return f"training config {source!r}: {name}"

    ints = {"data_repeats": (1, 10 ** 6), "batch_size": (1, MAX_BATCH), "steps": (1, 10 ** 9),
            "checkpoint_every": (1, 10 ** 9), "log_every": (1, 10 ** 9), "num_workers": (0, 256),
            "seed": (0, 2 ** 32 - 1), "image_size": (64, 1024), "num_refs": (0, 6)}
    for name, (lo, hi) in ints.items():
        value = getattr(cfg, name, None)
        if value is not None or name not in ("image_size", "num_refs"):
            check_int(where(name), value, lo, hi)
    check_float(where("lr"), cfg.lr, 1e-12, MAX_LR)
    for name in ("random_refs", "adjoint"):
        if not isinstance(getattr(cfg, name, False), bool):
            raise ConfigError(f"{where(name)} must be true or false, not {getattr(cfg, name)!r}")
    if not isinstance(cfg.lr_decay_steps, (list, tuple)):
        raise ConfigError(f"{where('lr_decay_steps')} must be a list of step numbers")
    for step in cfg.lr_decay_steps:
        check_int(where("lr_decay_steps"), step, 1, 10 ** 9)
    if not isinstance(cfg.data, list) or not cfg.data or not all(isinstance(d, str) and d for d in cfg.data):
        raise ConfigError(f"{where('data')} must be a dataset name or a list of them, e.g. [\"procedural\"]")
    for name in ("device", "init_checkpoint"):
        value = getattr(cfg, name, None)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where(name)} must be a string, not {value!r}")
    if not isinstance(cfg.model, (str, dict)):
        raise ConfigError(f"{where('model')} must be a preset name or a model config object")
    if not isinstance(cfg.model_overrides, dict):
        raise ConfigError(f"{where('model_overrides')} must be an object of FIELD: VALUE")
    if not dataclasses.is_dataclass(cfg.loss):
        raise ConfigError(f"{where('loss')} must be an object of loss weights")
    for f in dataclasses.fields(cfg.loss):
        value = getattr(cfg.loss, f.name)
        if isinstance(f.default, float):
            check_float(where(f"loss.{f.name}"), value, 0.0, 1e6)
        elif isinstance(value, (list, tuple)):
            if not value:
                raise ConfigError(f"{where(f'loss.{f.name}')} must not be empty")
            for v in value:
                check_float(where(f"loss.{f.name}"), v, 1e-3, 1.0)


def run(args: argparse.Namespace) -> int:
    from odecam.errors import OdecamError
    from odecam.training.trainer import Trainer, TrainConfig

    try:
        cfg = TrainConfig.load(args.config)
    except (TypeError, ValueError, RecursionError) as exc:  # a JSON document of the wrong shape
        raise OdecamError(f"training config {args.config!r} is not a valid odecam training config "
                          f"({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}).") from None
    check_train_config(cfg, args.config)
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
