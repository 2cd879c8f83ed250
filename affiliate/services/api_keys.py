"""Merchant API keys: created per program, shown once, stored hashed, revocable, with rotating signing secrets."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, joinedload

from affiliate.database import locked
from affiliate.models import ApiKey, Program, User
from affiliate.services import audit

KEY_PREFIX = "ct_"

# What a key may be allowed to do, as the admin reads it when issuing one. A key reaches only its own program.
SCOPES = {
    "conversions:write": "Report signups and sales",
    "refunds:write": "Report refunds",
    "plans:read": "Read commission plan versions",
    "plans:write": "Add commission plan versions",
    "groups:read": "Read partner groups and who is in them",
    "groups:write": "Create partner groups and move affiliates between them",
    "enrollments:read": "Read who is enrolled, applying or removed",
    "enrollments:write": "Approve, reject and remove affiliates; create invitation links",
    "adjustments:read": "Read bonuses and clawbacks",
    "adjustments:write": "Add bonuses and clawbacks (large ones still wait for a finance user's approval)",
    "webhooks:read": "Read webhook endpoints and their delivery logs",
    "webhooks:write": "Add, change and delete webhook endpoints, rotate their secrets, send messages again",
}
# What the merchant's checkout needs, and all that keys issued before scopes existed could do.
TRACKING_SCOPES = ("conversions:write", "refunds:write")
PREFIX_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"

# Read on every API request: built once (building a select() per call costs more than running it).
# Neither the key nor its program is cached, so a revoked key fails at once.
# The key with its program, in one query.
_KEY_BY_PREFIX = select(ApiKey).options(joinedload(ApiKey.program)).where(ApiKey.prefix == bindparam("prefix"))


@dataclass(frozen=True)
class IssuedKey:
    """A new key with its secrets in plain text: shown to the admin once, never again."""

    key: ApiKey
    token: str
    signing_secret: str


def new_signing_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # The token carries 192 random bits, so a fast hash is safe (a password hash is for guessable secrets).
    return hashlib.sha256(token.encode()).hexdigest()


def issue_key(
    session: Session,
    program: Program,
    name: str,
    *,
    actor: User,
    now: datetime,
    scopes: tuple[str, ...] | list[str] = TRACKING_SCOPES,
) -> IssuedKey:
    """Create a key for ``program`` allowed ``scopes``; the caller shows ``token`` and ``signing_secret`` once."""
    unknown = set(scopes) - set(SCOPES)
    if unknown or not scopes:
        raise ValueError(f"A key needs one or more of the known scopes, not {sorted(unknown)}.")
    scope_text = " ".join(scope for scope in SCOPES if scope in scopes)
    prefix = "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(8))
    token = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(24)}"
    secret = new_signing_secret()
    key = ApiKey(
        program_id=program.id,
        name=name,
        prefix=prefix,
        key_hash=hash_token(token),
        signing_secret=secret,
        created_by_id=actor.id,
        created_at=now,
        scopes=scope_text,
    )
    session.add(key)
    session.flush()
    _audit(
        session, actor, "api_key.issue", key, now, after={"program_id": program.id, "name": name, "scopes": scope_text}
    )
    return IssuedKey(key, token, secret)


def rotate_secret(session: Session, key: ApiKey, *, actor: User, now: datetime) -> str:
    """Start a new signing secret; the current one stays valid beside it until the next rotation."""
    locked(session, key)  # two rotations at once: the second keeps the first one's secret as the previous one
    secret = new_signing_secret()
    key.previous_signing_secret = key.signing_secret
    key.signing_secret = secret
    session.flush()
    _audit(session, actor, "api_key.rotate", key, now)
    return secret


def retire_previous_secret(session: Session, key: ApiKey, *, actor: User, now: datetime) -> None:
    """End the rotation: only the current signing secret is accepted from now on."""
    key.previous_signing_secret = None
    session.flush()
    _audit(session, actor, "api_key.retire_previous", key, now)


def revoke_key(session: Session, key: ApiKey, *, actor: User, now: datetime) -> bool:
    """Revoke a key at once; False if it already was."""
    if key.revoked_at is not None:
        return False
    key.revoked_at = now
    session.flush()
    _audit(session, actor, "api_key.revoke", key, now)
    return True


def find_key(session: Session, token: str) -> ApiKey | None:
    """The active key a bearer token belongs to, or None."""
    if not token.startswith(KEY_PREFIX):
        return None
    prefix, _, _ = token[len(KEY_PREFIX) :].partition("_")
    if len(prefix) != 8:
        return None
    key = session.scalar(_KEY_BY_PREFIX, {"prefix": prefix})
    if key is None or key.revoked_at is not None:
        return None
    if not hmac.compare_digest(key.key_hash, hash_token(token)):
        return None
    return key


def key_program(session: Session, key: ApiKey) -> Program:
    """The program a key reports conversions to."""
    return key.program  # loaded with the key by find_key


def signing_secrets(key: ApiKey) -> list[str]:
    """The secrets a signature may be made with: the current one, and the previous during a rotation."""
    return [secret for secret in (key.signing_secret, key.previous_signing_secret) if secret]


def _audit(session: Session, actor: User, action: str, key: ApiKey, now: datetime, after: dict | None = None) -> None:
    # Secrets never go into the audit log; the key's prefix identifies it.
    audit.record(
        session,
        actor_id=actor.id,
        action=action,
        subject_type="api_key",
        subject_id=key.id,
        before=None,
        after={"prefix": key.prefix, **(after or {})},
        now=now,
    )


def keys_of(session: Session, program_id: int) -> list[ApiKey]:
    """A program's API keys, newest first."""
    return list(session.scalars(select(ApiKey).where(ApiKey.program_id == program_id).order_by(ApiKey.id.desc())))
