"""Strict JSON for the API: one object, UTF-8, no duplicate keys, no NaN or Infinity, bounded depth.

The standard library accepts all of these silently (the last duplicate key wins, NaN parses, and a number too
large for a float, such as 1e400, becomes Infinity without a word);
for a request that moves money each would be a way to say two things at once.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from affiliate.validators import unstorable


class JSONError(Exception):
    """A body or field that is not acceptable; ``reason`` is a stable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def parse_object(raw: bytes, *, max_depth: int = 20) -> dict:
    """Parse a request body that must be one JSON object, or raise JSONError."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raise JSONError("invalid_encoding", "The body must be UTF-8 without a byte order mark.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise JSONError("invalid_encoding", "The body must be UTF-8.") from error
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant, parse_float=_finite_float)
    except JSONError:
        raise
    except (ValueError, RecursionError) as error:
        # ValueError also covers integers over Python's 4,300-digit conversion limit.
        raise JSONError("invalid_json", f"The body is not valid JSON: {_short(error)}") from error
    if not isinstance(value, dict):
        raise JSONError("not_an_object", "The body must be a JSON object.")
    if _depth(value) > max_depth:
        raise JSONError("too_deep", f"The body nests deeper than {max_depth} levels.")
    where = _unstorable_string(value)
    if where is not None:
        raise JSONError(
            "invalid_string", f"{where} must not contain NUL (\\u0000) or unpaired surrogates (\\ud800-\\udfff)."
        )
    return value


def require_int(value: Any, name: str, *, minimum: int, maximum: int) -> int:
    """An integer field: not a bool, not a float (even 10.0), not a string, within bounds."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise JSONError("invalid_field", f"{name} must be an integer (minor units, no decimal point).")
    if not minimum <= value <= maximum:
        raise JSONError("invalid_field", f"{name} must be between {minimum} and {maximum}.")
    return value


def require_str(
    value: Any,
    name: str,
    *,
    max_length: int,
    min_length: int = 1,
    pattern: re.Pattern | None = None,
    optional: bool = False,
) -> str | None:
    """A string field within bounds (and matching ``pattern``); None allowed only when optional."""
    if value is None:
        if optional:
            return None
        raise JSONError("missing_field", f"{name} is required.")
    if not isinstance(value, str):
        raise JSONError("invalid_field", f"{name} must be a string.")
    if not min_length <= len(value) <= max_length:
        raise JSONError("invalid_field", f"{name} must be {min_length} to {max_length} characters.")
    if pattern is not None and not pattern.fullmatch(value):
        raise JSONError("invalid_field", f"{name} has characters that are not allowed.")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    result: dict = {}
    for key, value in pairs:
        if key in result:
            raise JSONError("duplicate_key", f"The key {key[:64]!r} appears twice in one object.")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise JSONError("non_finite_number", f"{name} is not a number JSON allows.")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise JSONError("non_finite_number", f"{literal[:40]} is too large for a number JSON can carry.")
    return value


def _depth(value: Any) -> int:
    """How deeply containers nest (iterative, so a hostile body cannot exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _unstorable_string(value: Any) -> str | None:
    """Where in ``value`` a key or string holds NUL or a lone surrogate (no database column stores either)."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if unstorable(item):
                return path or "the body"
        elif isinstance(item, dict):
            for key, child in item.items():
                name = f"{path}.{key}" if path else key
                if unstorable(key):
                    return f"a key in {path or 'the body'}"
                stack.append((child, name))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{index}]") for index, child in enumerate(item))
    return None


def _short(error: Exception) -> str:
    return str(error).split(":")[0][:120]
