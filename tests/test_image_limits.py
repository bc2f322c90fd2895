"""A user's image is checked from its header before any pixel is decoded: too many pixels, or a header
that claims more pixels than the file holds, get one sentence, quickly and in little memory."""

import io
import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from odecam.cli import main
from odecam.engine import images
from odecam.engine.images import MAX_PIXELS, decode_image_bytes, load_image
from odecam.errors import InputImageError


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def palette_png(w: int, h: int) -> bytes:
    """A real, decodable 1-bit palette PNG of w x h black pixels, made without allocating w x h."""
    row = b"\x00" * (1 + (w + 7) // 8)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 3, 0, 0, 0))
            + _chunk(b"PLTE", b"\x00\x00\x00\xff\xff\xff") + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))


def jpeg_bytes(w: int, h: int, seed: int = 0, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def lying_jpeg(claim_w: int = 8192, claim_h: int = 4880) -> bytes:
    """A 256x256 JPEG whose frame header claims ``claim_w`` x ``claim_h`` (the reported attack)."""
    data = bytearray(jpeg_bytes(256, 256))
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", claim_h, claim_w)
    return bytes(data)


def lying_png(claim_w: int = 6000, claim_h: int = 4000) -> bytes:
    """A 256x256 RGB PNG (a smooth picture, so it is small) whose IHDR claims a larger size."""
    buf = io.BytesIO()
    ramp = np.linspace(0, 255, 256, dtype=np.uint8)
    Image.fromarray(np.stack([ramp[None].repeat(256, 0), ramp[:, None].repeat(256, 1),
                              np.full((256, 256), 90, np.uint8)], axis=2)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", claim_w, claim_h)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def test_pil_guard_is_set_to_our_cap():
    assert Image.MAX_IMAGE_PIXELS == MAX_PIXELS == 40_000_000


def test_lying_jpeg_header_is_refused_before_decoding(tmp_path):
    path = tmp_path / "liar.jpg"
    path.write_bytes(lying_jpeg())
    with Image.open(path) as im:
        assert im.size == (8192, 4880)  # what the header claims: under the 40 MP cap
    with pytest.raises(InputImageError, match=r"source image '.*liar\.jpg' claims 8192x4880 pixels but holds too "
                                              r"little data .* damaged or crafted"):
        load_image(path, "source image")
    with pytest.raises(InputImageError, match=r"^the avatar claims 8192x4880 pixels"):
        decode_image_bytes(lying_jpeg(), "the avatar")


def test_lying_png_header_is_refused(tmp_path):
    with pytest.raises(InputImageError, match="claims 6000x4000 pixels but holds too little data"):
        decode_image_bytes(lying_png(), "the avatar")


@pytest.mark.parametrize("w,h", [(7000, 7000), (8200, 40)])
def test_huge_real_image_is_refused_by_its_header(tmp_path, w, h):
    path = tmp_path / "huge.png"
    path.write_bytes(palette_png(w, h))
    with pytest.raises(InputImageError, match=rf"huge\.png' is {w}x{h} pixels, too large \(at most 40 megapixels"):
        load_image(path, "source image")


def test_header_over_twice_the_cap_is_refused_by_pil_guard_with_our_sentence():
    with pytest.raises(InputImageError, match=r"^the avatar has 10,000 megapixels, too large \(at most 40"):
        decode_image_bytes(lying_png(100_000, 100_000), "the avatar")


def test_refusals_take_little_memory(tmp_path):
    """In a fresh process: refusing the lying JPEG and a 49-megapixel PNG raises the peak memory by a few
    MB (decoding them would take 160 MB and more)."""
    (tmp_path / "liar.jpg").write_bytes(lying_jpeg())
    (tmp_path / "huge.png").write_bytes(palette_png(7000, 7000))
    code = f"""
import json, resource
from odecam.engine.images import load_image
from odecam.errors import InputImageError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for name in ("liar.jpg", "huge.png"):
    try:
        load_image({str(tmp_path)!r} + "/" + name, "source image")
    except InputImageError:
        pass
    else:
        raise SystemExit(name + " was accepted")
print(json.dumps({{"grew_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before}}))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["grew_kb"] < 30_000


def test_large_jpeg_is_decoded_at_reduced_scale():
    data = jpeg_bytes(4096, 2304, quality=30)
    img = decode_image_bytes(data, "the avatar")
    assert img.shape == (1152, 2048, 3) and img.dtype == np.uint8
    small = decode_image_bytes(jpeg_bytes(640, 480), "the avatar")
    assert small.shape == (480, 640, 3)


def test_bytes_are_checked_like_files(tmp_path):
    with pytest.raises(InputImageError, match="^the avatar is not a readable image .* pass a JPEG or PNG file"):
        decode_image_bytes(b"GIF89a" + b"\x00" * 100, "the avatar", formats=("JPEG", "PNG"))
    buf = io.BytesIO()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(buf, "GIF")
    with pytest.raises(InputImageError, match="not a readable image"):
        decode_image_bytes(buf.getvalue(), "the avatar")
    with pytest.raises(InputImageError, match="^the avatar is only 16x16 pixels"):
        decode_image_bytes(jpeg_bytes(16, 16), "the avatar")
    with pytest.raises(InputImageError, match="not a readable image"):
        decode_image_bytes(jpeg_bytes(256, 256)[:300], "the avatar")
    with pytest.raises(InputImageError, match="must be image file bytes"):
        decode_image_bytes("a string", "the avatar")


def test_special_files_are_refused(tmp_path):
    with pytest.raises(InputImageError, match="not a regular file"):
        load_image("/dev/zero", "source image")


@pytest.mark.parametrize("flag", ["--source", "--ref"])
def test_cli_demo_refuses_lying_image_in_one_line(tmp_path, capsys, flag):
    path = tmp_path / "liar.jpg"
    path.write_bytes(lying_jpeg())
    rc = main(["demo", "--preset", "tiny", flag, str(path), "--max-frames", "1", "-o", str(tmp_path / "x.mp4")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "liar.jpg' claims 8192x4880 pixels" in err[0]
    assert images.MAX_PIXELS == 40_000_000


def test_exif_orientation_is_applied():
    """A phone portrait stored sideways with EXIF orientation 6 (rotate 90 degrees clockwise) comes out upright."""
    stored = np.zeros((120, 200, 3), np.uint8)
    stored[:, :20] = 255  # a white band on the left of the stored (sideways) picture
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif, quality=95)
    upright = decode_image_bytes(buf.getvalue(), "the avatar")
    assert upright.shape == (200, 120, 3)
    assert upright[:20].mean() > 200 and upright[-100:].mean() < 30  # the band is now at the top
