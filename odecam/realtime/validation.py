"""Checks for what arrives from the network, in one place: JSON with bounded depth and numbers, the
signalling offer's schema, and data-channel control messages.

Everything here is pure (no I/O) and raises :class:`MessageRefused` whose text is one sentence saying
what was wrong; the servers answer HTTP 400 with it (offers) or send it back as a control error and
log it (data-channel messages). Nothing a peer sends may raise anything else.

Limits (the largest legitimate message is an SDP offer of a few KiB):

* nesting depth at most :data:`MAX_DEPTH` (an offer is depth 1, control messages depth 1-2);
* integers at most :data:`MAX_INT_DIGITS` digits (Python refuses over 4300 with a ValueError, and
  big integers are slow to convert); floats must be finite (no ``NaN``/``Infinity``);
* text bodies in UTF-8 (or its ASCII subset); other ``charset`` values are refused.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Mapping

#: the deepest nesting of arrays/objects accepted in any JSON from the network
MAX_DEPTH = 8
#: the most digits an integer may have
MAX_INT_DIGITS = 20
#: the longest string field of a control message (names, reasons, model names)
MAX_FIELD_CHARS = 1000
#: charsets a JSON body may declare (lower case; None: not declared, UTF-8 assumed)
JSON_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


class MessageRefused(ValueError):
    """A message from the network that is not used; ``str(exc)`` is the reason, one sentence."""


def _int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise MessageRefused(f"a number has {digits} digits, more than the {MAX_INT_DIGITS} allowed")
    return int(text)


def _float(text: str) -> float:
    if len(text) > 64:
        raise MessageRefused(f"a number is {len(text)} characters long, more than the 64 allowed")
    value = float(text)
    if not math.isfinite(value):
        raise MessageRefused("a number is out of range (infinite)")
    return value


def _constant(name: str) -> float:
    raise MessageRefused(f"{name} is not a JSON number")


def json_depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` in JSON text (brackets inside strings do not count)."""
    depth = deepest = 0
    for m in _BRACKETS.finditer(_STRINGS.sub("", text)):
        if m.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def loads(text: str, not_json: str = "it is not valid JSON", max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` with bounded depth, integer size and finite floats; raises :class:`MessageRefused`
    (``not_json`` is the start of the reason when the text is not JSON at all)."""
    depth = json_depth(text)
    if depth > max_depth:
        raise MessageRefused(f"the JSON is nested {depth} deep, more than the {max_depth} allowed")
    try:
        return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except MessageRefused:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise MessageRefused(f"{not_json} ({exc})") from None


def decode_text(raw: bytes, charset: str | None) -> str:
    """Body bytes with their declared charset -> text; only UTF-8 (and ASCII) are accepted."""
    if charset is not None and charset.strip().lower() not in JSON_CHARSETS:
        raise MessageRefused(f"the body's charset {charset[:40]!r} is not supported; send UTF-8 JSON")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MessageRefused("the body is not valid UTF-8; send UTF-8 JSON") from None


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def check_name(value: object, field: str, max_chars: int = MAX_FIELD_CHARS) -> str:
    """A short printable name (avatar names, model names)."""
    if not isinstance(value, str):
        raise MessageRefused(f'"{field}" must be a string, got {_kind(value)}')
    if not value or len(value) > max_chars or not value.isprintable():
        raise MessageRefused(f'"{field}" must be 1 to {max_chars} printable characters')
    return value


def parse_offer(raw: bytes, charset: str | None = None) -> dict:
    """A signalling ``POST /offer`` body -> ``{"sdp": str, "type": "offer", "avatar"?: str | None}``.

    Checks charset, UTF-8, depth, numbers, and the schema: ``sdp`` a non-empty string, ``type`` the
    string ``"offer"``, ``avatar`` (optional) null or a name. Other keys are ignored.
    """
    body = loads(decode_text(raw, charset), 'the body must be JSON: {"sdp": ..., "type": "offer"}')
    if not isinstance(body, dict):
        raise MessageRefused(f'the body must be a JSON object {{"sdp": ..., "type": "offer"}}, got {_kind(body)}')
    sdp = body.get("sdp")
    if not isinstance(sdp, str) or not sdp:
        raise MessageRefused(f'the body must be {{"sdp": <string>, "type": "offer"}}; "sdp" is {_kind(sdp)}')
    if body.get("type") != "offer":
        raise MessageRefused('the body must be {"sdp": <string>, "type": "offer"}; "type" is not "offer"')
    avatar = body.get("avatar")
    if avatar is not None:
        check_name(avatar, "avatar")
    return body


# -- data-channel control messages -------------------------------------------------------------------
#: field name -> (accepted types, required); ``int`` never accepts ``bool``
Schema = Mapping[str, tuple[tuple[type, ...], bool]]


def parse_control(message: object, schemas: Mapping[str, Schema], max_bytes: int) -> dict:
    """A data-channel control message -> its dict, checked against ``schemas[msg["type"]]``.

    ``message`` must be JSON text of at most ``max_bytes`` bytes holding an object whose ``"type"``
    is a key of ``schemas``; each listed field must have one of its types (strings at most
    :data:`MAX_FIELD_CHARS` characters). Fields not listed are dropped from the result.
    """
    if not isinstance(message, str):
        raise MessageRefused("control messages are JSON text, not binary")
    if len(message) > max_bytes or len(message.encode("utf-8", "surrogatepass")) > max_bytes:
        raise MessageRefused(f"control messages are JSON text of at most {max_bytes} bytes")
    msg = loads(message, "control messages are JSON objects with a 'type'")
    if not isinstance(msg, dict) or "type" not in msg:
        raise MessageRefused("control messages are JSON objects with a 'type'")
    kind = msg["type"]
    if not isinstance(kind, str) or kind not in schemas:
        shown = repr(kind[:40]) if isinstance(kind, str) else _kind(kind)
        raise MessageRefused(f"unknown control message type {shown}; known: {', '.join(sorted(schemas))}")
    out = {"type": kind}
    for name, (types, required) in schemas[kind].items():
        if name not in msg:
            if required:
                raise MessageRefused(f'the "{kind}" message needs "{name}"')
            continue
        value = msg[name]
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok:
            wanted = " or ".join(_kind(t()) if t is not type(None) else "null" for t in types)
            raise MessageRefused(f'"{name}" of the "{kind}" message must be {wanted}, got {_kind(value)}')
        if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
            raise MessageRefused(f'"{name}" of the "{kind}" message is over {MAX_FIELD_CHARS} characters')
        out[name] = value
    return out
