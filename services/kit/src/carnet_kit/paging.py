"""Opaque page tokens and page sizes for List methods (``page_size``, ``page_token``).

A token carries the keyset position of the last item of the previous page (any JSON
value: a title, a [time, id] pair…) and a digest of the query it belongs to, so that a
token of another query, or something that is not a token, is INVALID_ARGUMENT naming
``page_token`` instead of a wrong page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from carnet_kit.errors import InvalidArgument


def page_size(requested: int, *, default: int, maximum: int) -> int:
    """The page size to use: the default for 0, at most the maximum; negative is INVALID_ARGUMENT."""
    if requested < 0:
        raise InvalidArgument("page_size must not be negative", field="page_size", reason="FIELD_INVALID")
    return min(requested or default, maximum)


def _digest(scope: str) -> str:
    return hashlib.sha256(scope.encode()).hexdigest()[:16]


def encode_page_token(position: Any, scope: str) -> str:
    """A token for the page after ``position`` (JSON-serialisable), bound to the query ``scope``."""
    body = json.dumps({"p": position, "s": _digest(scope)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode_page_token(token: str, scope: str) -> Any:
    """The position a token of the same query carries; None for the first page (empty token)."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        body = json.loads(base64.urlsafe_b64decode(padded.encode()))
        position, digest = body["p"], body["s"]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument(
            "page_token is not a token from this list", field="page_token", reason="FIELD_INVALID"
        ) from None
    if digest != _digest(scope) or position is None:
        raise InvalidArgument("page_token belongs to another query", field="page_token", reason="FIELD_INVALID")
    return position
