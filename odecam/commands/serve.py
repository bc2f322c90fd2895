"""``odecam serve``: the animated avatar to a browser over WebRTC.

Serves a page; the browser sends its webcam and gets the avatar back as a video track. The URL printed
at start carries the access token in its fragment (``/#token=...``). See
:mod:`odecam.realtime.webrtc_server`.
"""

from __future__ import annotations

import argparse

from odecam.commands._common import (add_keep_tilt_argument, add_paste_back_argument, ode_steps, port, positive_int,
                                     stop_on_signals)
from odecam.export.options import add_backend_arguments
import os
from pathlib import Path
from urllib.parse import quote

NAME = "serve"
HELP = "serve a web page that animates an avatar with the browser's webcam over WebRTC"
TOKEN_ENV = "ODECAM_TOKEN"






def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", action="append", default=[], metavar="IMAGE",
                   help="an avatar portrait (repeatable: the page offers each; default: the built-in astronaut)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=port, default=8080, help="port to listen on (default: 8080; 0: any free port)")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                   help=f"access token the page must present (default: ${TOKEN_ENV}, else a random one, "
                        "printed in the URL)")
    p.add_argument("--max-peers", type=positive_int, default=4, help="concurrent browser calls allowed (default: 4)")
    p.add_argument("--stun", action="append", default=[], metavar="URL",
                   help="STUN/TURN server URL for clients on other networks, e.g. stun:stun.example.org:3478 "
                        "(repeatable; default: none, host candidates only)")
    p.add_argument("--cert", help="TLS certificate (PEM) to serve https: browsers on other machines only "
                                  "give camera access to https pages")
    p.add_argument("--key", help="TLS private key (PEM) for --cert")
    p.add_argument("--checkpoint", help="model weights (.safetensors); default: the best installed")
    p.add_argument("--preset", choices=["lite", "vox256", "tiny"], help="architecture when no checkpoint is given")
    p.add_argument("--ode-steps", type=ode_steps, default=None, help="fixed ODE steps per frame (default: the model's)")
    p.add_argument("--absolute", action="store_true", help="use absolute driving keypoints (no relative motion)")
    p.add_argument("--no-crop", action="store_true",
                   help="take the --source images as they are (default: crop the largest face square)")
    add_keep_tilt_argument(p, "--source photo")
    add_paste_back_argument(p, "the browser (the photo at 2x the model's size in height)")
    p.add_argument("--no-follow", dest="follow", action="store_false",
                   help="do not follow the face in the browser's webcam: a fixed centre crop (default: follow it, "
                        "as odecam live does)")
    p.add_argument("--no-level", dest="level", action="store_false",
                   help="do not level a tilted face for the keypoint detector (default: level it, turn the "
                        "keypoints back)")
    add_backend_arguments(p)


def _ssl_context(cert: str | None, key: str | None):
    import ssl

    from odecam.errors import OdecamError

    if not cert and not key:
        return None
    if not cert:
        raise OdecamError("--key was given without --cert; pass both to serve https.")
    for role, path in (("--cert", cert), ("--key", key)):
        if path and not Path(path).is_file():
            raise OdecamError(f"{role} file {path!r} does not exist; check the path.")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise OdecamError(f"cannot use the TLS certificate {cert!r}{' and key ' + repr(key) if key else ''} "
                          f"({exc.__class__.__name__}); pass a PEM certificate and its matching private key.") \
            from None
    return ctx


def animator_factory(model, backend: str, precision: str = "fp32", relative: bool = True,
                     ode_steps: int | None = None):
    """A factory of :class:`~odecam.engine.Animator` on ``backend`` (a canonical name, see
    ``odecam.engine.threads.choose_backend``): each call builds its own backend instance, since a
    backend holds the state of the avatar it renders (one per browser peer / keypoint connection)."""
    from odecam.engine import Animator
    from odecam.engine.backends import get_backend
    from odecam.engine.threads import backend_options

    def make(avatar):
        b = get_backend(backend, model, precision=precision, ode_steps=ode_steps, **backend_options(backend))
        return Animator(model, avatar, relative=relative, ode_steps=ode_steps, backend=b)

    return make


def load_avatars(model, sources: list[str], crop: bool = True, log=None, level: bool = True):
    """The avatars for ``--source`` images (default: the built-in astronaut); names are unique. Each
    photo's largest face is cropped square (``crop``; see :mod:`odecam.engine.portrait`), turned upright
    first when tilted (``level``), and ``log`` gets one line saying so. Each avatar keeps where its square lies in
    its photo (:attr:`odecam.engine.avatar.Avatar.placement`: the image skip's surroundings, and ``--paste-back``)."""
    from odecam.engine import Avatar
    from odecam.engine.portrait import avatar_photo

    size = model.cfg.image_size
    if not sources:
        image, placement = avatar_photo(None, size)
        return [Avatar(model, image, name="astronaut", placement=placement)]
    avatars, seen = [], set()
    for path in sources:
        image, placement = avatar_photo(path, size, crop, log=log, level=level)
        name = Path(path).stem or "avatar"
        base, n = name, 2
        while name in seen:
            name, n = f"{base}-{n}", n + 1
        seen.add(name)
        avatars.append(Avatar(model, image, name=name, placement=placement))
    return avatars


def run(args: argparse.Namespace) -> int:
    import asyncio

    from odecam.engine.weights import load_model
    from odecam.errors import OdecamError

    try:
        import aiohttp  # noqa: F401  (aiortc does not pull it in)
    except ImportError:
        raise OdecamError("odecam serve needs the aiohttp package, which is not installed; "
                          "run: pip install aiohttp") from None
    from odecam.realtime.webrtc_server import AvatarServer, check_token, is_loopback_host, new_token, start

    token = check_token(args.token) if args.token else new_token()
    ssl_context = _ssl_context(args.cert, args.key)
    from odecam.engine.threads import apply_thread_policy, choose_backend

    backend = choose_backend(args.backend)  # 'auto' -> onnxruntime on a CPU
    plan = apply_thread_policy(backend)
    loaded = load_model(args.checkpoint, args.preset, paste_back=args.paste_back)
    avatars = load_avatars(loaded.model, args.source, not args.no_crop, log=lambda t: print(f"odecam serve: {t}"),
                           level=not args.keep_tilt)
    loopback = is_loopback_host(args.host)
    factory = animator_factory(loaded.model, backend, args.precision, not args.absolute, args.ode_steps)
    described = factory(avatars[0]).backend.describe()  # builds (and caches) the graphs before any peer
    from odecam.realtime.framing import FaceFramer, FramingConfig

    framing = FramingConfig(output_size=loaded.model.cfg.image_size, follow_face=args.follow, level_roll=args.level)
    FaceFramer(framing)  # loads the face detector and landmarks now rather than on the first call
    server = AvatarServer(loaded.model, avatars, token, max_peers=args.max_peers, loopback=loopback,
                          ice_servers=args.stun, relative=not args.absolute, ode_steps=args.ode_steps,
                          animator_factory=factory, framing=framing, paste_back=args.paste_back)

    async def main() -> None:
        running = await start(server, args.host, args.port, ssl_context)
        stop = asyncio.Event()
        stop_on_signals(stop)
        print(f"odecam serve: weights: {loaded.description}")
        print(f"odecam serve: backend {described}; {plan.describe()}")
        print(f"odecam serve: avatars: {', '.join(a.name for a in avatars)}; at most {args.max_peers} calls; "
              f"the webcam framed as odecam live frames it ({'face followed' if args.follow else 'centre crop'}"
              f"{', levelled' if args.level else ''})"
              + ("; each avatar sent in its whole photo (--paste-back)" if args.paste_back else ""))
        if not loopback and ssl_context is None:
            print("odecam serve: note: browsers on other machines give camera access only to https pages; "
                  "pass --cert and --key (this machine can use http://127.0.0.1)")
        url = running.url
        if args.host in ("0.0.0.0", "::"):
            url = url.replace(f"//{args.host}:", "//127.0.0.1:").replace(f"//[{args.host}]:", "//127.0.0.1:")
        print(f"odecam serve: open {url}#token={quote(token, safe='')}  (Ctrl+C to stop)", flush=True)
        try:
            await stop.wait()
        finally:
            await running.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    print("odecam serve: stopped")
    return 0
