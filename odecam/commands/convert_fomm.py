"""``odecam convert-fomm``: import a First Order Motion Model checkpoint into the vox256 preset."""

from __future__ import annotations

import argparse

NAME = "convert-fomm"
HELP = "import a First Order Motion Model vox-256 checkpoint (vox-cpk.pth.tar) as safetensors"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="FOMM checkpoint, e.g. vox-cpk.pth.tar or vox-adv-cpk.pth.tar")
    p.add_argument("-o", "--output", required=True, help="output .safetensors path (a .json config is written beside it)")


def run(args: argparse.Namespace) -> int:
    from odecam.checkpoint import convert_fomm

    path, new_keys = convert_fomm(args.checkpoint, args.output)
    print(f"wrote {path} and {path.with_suffix('.json')} (vox256; {len(new_keys)} new tensors for F_E, F_A and "
          "fusion start as identity, so the model computes what FOMM computes)")
    return 0
