"""Signed merchant requests: HMAC-SHA256 over ``request_id.timestamp.raw_body``.

A merchant sends three headers with each request:

- ``Clicktrail-Request-Id``: its own id for the request, 1 to 128 of ``A-Z a-z 0-9 . _ : -``;
- ``Clicktrail-Timestamp``: Unix seconds, ASCII digits, at most 12 of them;
- ``Clicktrail-Signature``: ``v1=<hex digest>``, one or more separated by commas or spaces, so a
  merchant rotating its secret can sign with the old and the new one. Entries of other schemes
  are ignored; hex is compared case-insensitively.

The digest is HMAC-SHA256, keyed with the API key's signing secret, of the bytes
``f"{request_id}.{timestamp}."`` followed by the body exactly as sent. A timestamp more than
300 s from the server's clock in either direction is refused, so a captured request cannot be
replayed later (and within the window, the conversion's idempotency key makes a replay harmless).
Digests are compared with ``hmac.compare_digest`` only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

TOLERANCE = timedelta(seconds=300)
REQUEST_ID_HEADER = "Clicktrail-Request-Id"
TIMESTAMP_HEADER = "Clicktrail-Timestamp"
SIGNATURE_HEADER = "Clicktrail-Signature"
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
TIMESTAMP = re.compile(r"[0-9]{1,12}")
V1 = re.compile(r"[0-9a-f]{64}")
MAX_SIGNATURES = 8


class SignatureError(Exception):
    """A request whose signature headers are missing, malformed, stale or wrong."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class SignedRequest:
    request_id: str
    timestamp: int
    signatures: tuple[str, ...]


def sign(secret: str, request_id: str, timestamp: int, body: bytes) -> str:
    """The v1 hex digest of one request."""
    message = f"{request_id}.{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, request_id: str, timestamp: int, body: bytes) -> str:
    return f"v1={sign(secret, request_id, timestamp, body)}"


def parse_headers(headers: Mapping[str, str]) -> SignedRequest:
    """Read the three signature headers, or raise SignatureError."""
    request_id = _header(headers, REQUEST_ID_HEADER)
    timestamp = _header(headers, TIMESTAMP_HEADER)
    signature = _header(headers, SIGNATURE_HEADER)
    if not REQUEST_ID.fullmatch(request_id):
        raise SignatureError("malformed_header", f"{REQUEST_ID_HEADER} must be 1-128 of A-Z a-z 0-9 . _ : -.")
    if not TIMESTAMP.fullmatch(timestamp):
        raise SignatureError("malformed_header", f"{TIMESTAMP_HEADER} must be Unix seconds (digits only).")
    signatures = []
    for entry in re.split(r"[,\s]+", signature)[: MAX_SIGNATURES * 4]:
        scheme, _, value = entry.partition("=")
        if scheme == "v1" and V1.fullmatch(value.lower()):
            signatures.append(value.lower())
    if not signatures:
        raise SignatureError("malformed_header", f"{SIGNATURE_HEADER} must hold v1=<64 hex digits>.")
    return SignedRequest(request_id, int(timestamp), tuple(signatures[:MAX_SIGNATURES]))


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    now: datetime,
    tolerance: timedelta = TOLERANCE,
) -> SignedRequest:
    """Check a request's signature against any active secret; return what was signed or raise SignatureError."""
    signed = parse_headers(headers)
    sent_at = datetime.fromtimestamp(min(signed.timestamp, 253402300799), UTC)
    if abs(now - sent_at) > tolerance:
        raise SignatureError(
            "timestamp_out_of_tolerance",
            f"{TIMESTAMP_HEADER} is more than {int(tolerance.total_seconds())} s from the server's clock.",
        )
    matched = False
    for secret in secrets:
        if not secret:
            continue
        expected = sign(secret, signed.request_id, signed.timestamp, body)
        for candidate in signed.signatures:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("signature_mismatch", "The signature does not match this request and key.")
    return signed


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    if not value:
        raise SignatureError("missing_header", f"The {name} header is required.")
    if not isinstance(value, str) or not value.isascii():
        raise SignatureError("malformed_header", f"The {name} header must be ASCII.")
    return value.strip()
