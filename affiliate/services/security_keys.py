"""Security keys as a second factor (WebAuthn, through the `webauthn` package).

The browser creates or uses a key only after the server handed it a random challenge; the server keeps
that challenge in the person's signed session and checks the answer against it, the site's origin and
its relying-party id (the portal's host), then the key's public key and signature counter.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import webauthn
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from webauthn.helpers import bytes_to_base64url, parse_authentication_credential_json
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidJSONStructure, InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from affiliate.models import SecurityKey, User
from affiliate.services import audit

NAME_MAX = 64
CREDENTIAL_MAX = 16_384  # bytes of JSON a browser's answer may take


class KeyRefused(Exception):
    """The browser's answer did not prove a key; the message is safe to show."""


@dataclass(frozen=True)
class RelyingParty:
    """Who the keys are for: the portal's host (rp id), its name, and the origin pages are served from."""

    id: str
    name: str
    origin: str

    @property
    def usable(self) -> bool:
        """Browsers make keys only for a domain name: a portal reached at an IP address (``make run``'s 127.0.0.1)
        cannot register one, and must be opened at a name (``localhost``) or given ``WEBAUTHN_RP_ID``."""
        try:
            ipaddress.ip_address(self.id)
        except ValueError:
            return True
        return False

    @classmethod
    def from_config(cls, config) -> RelyingParty:
        base = urlsplit(config["PUBLIC_BASE_URL"])
        return cls(
            config.get("WEBAUTHN_RP_ID") or base.hostname or "localhost",
            config["WEBAUTHN_RP_NAME"],
            f"{base.scheme}://{base.netloc}",
        )


def keys_of(session: Session, user: User) -> list[SecurityKey]:
    return list(session.scalars(select(SecurityKey).where(SecurityKey.user_id == user.id).order_by(SecurityKey.id)))


def registration_options(session: Session, user: User, rp: RelyingParty) -> tuple[str, bytes]:
    """The options for navigator.credentials.create() as JSON, and the challenge to keep until the answer."""
    options = webauthn.generate_registration_options(
        rp_id=rp.id,
        rp_name=rp.name,
        user_id=str(user.id).encode(),
        user_name=user.email,
        user_display_name=user.name,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.DISCOURAGED, user_verification=UserVerificationRequirement.DISCOURAGED
        ),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=key.credential_id) for key in keys_of(session, user)],
    )
    return webauthn.options_to_json(options), options.challenge


def register(
    session: Session, user: User, credential: str, name: str, *, challenge: bytes, rp: RelyingParty, now: datetime
) -> SecurityKey:
    """Store the key the browser created, once its answer checks out; raises KeyRefused otherwise."""
    name = " ".join(name.split())[:NAME_MAX] or "Security key"
    if len(credential) > CREDENTIAL_MAX:
        raise KeyRefused("The browser's answer is too large.")
    try:
        verified = webauthn.verify_registration_response(
            credential=credential, expected_challenge=challenge, expected_rp_id=rp.id, expected_origin=rp.origin
        )
    except (InvalidRegistrationResponse, InvalidJSONStructure, ValueError, KeyError, TypeError) as error:
        raise KeyRefused(f"The security key could not be registered: {error}") from None
    if session.scalar(select(SecurityKey.id).where(SecurityKey.credential_id == verified.credential_id)):
        raise KeyRefused("That security key is registered already.")
    key = SecurityKey(
        user_id=user.id,
        name=name,
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        created_at=now,
    )
    session.add(key)
    session.flush()
    audit.record(
        session,
        actor_id=user.id,
        action="user.security_key_added",
        subject_type="user",
        subject_id=user.id,
        before=None,
        after={"key": key.id, "name": name},
        now=now,
    )
    return key


def authentication_options(session: Session, user: User, rp: RelyingParty) -> tuple[str, bytes] | None:
    """Options for navigator.credentials.get() naming the user's keys, and the challenge; None without keys."""
    keys = keys_of(session, user)
    if not keys:
        return None
    options = webauthn.generate_authentication_options(
        rp_id=rp.id,
        allow_credentials=[PublicKeyCredentialDescriptor(id=key.credential_id) for key in keys],
        user_verification=UserVerificationRequirement.DISCOURAGED,
    )
    return webauthn.options_to_json(options), options.challenge


def authenticate(
    session: Session, user: User, credential: str, *, challenge: bytes, rp: RelyingParty, now: datetime
) -> SecurityKey:
    """Check the browser's answer to a sign-in challenge against one of the user's keys; raises KeyRefused."""
    if len(credential) > CREDENTIAL_MAX:
        raise KeyRefused("The browser's answer is too large.")
    try:
        parsed = parse_authentication_credential_json(credential)
    except (InvalidJSONStructure, InvalidAuthenticationResponse, ValueError, KeyError, TypeError, json.JSONDecodeError):
        raise KeyRefused("The browser's answer could not be read.") from None
    key = session.scalar(
        select(SecurityKey)
        .where(SecurityKey.user_id == user.id, SecurityKey.credential_id == parsed.raw_id)
        .with_for_update()
    )
    if key is None:
        raise KeyRefused("That security key is not registered to this account.")
    try:
        verified = webauthn.verify_authentication_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            credential_public_key=key.public_key,
            credential_current_sign_count=key.sign_count,
        )
    except (InvalidAuthenticationResponse, ValueError) as error:
        raise KeyRefused(f"The security key's answer was refused: {error}") from None
    key.sign_count = verified.new_sign_count
    key.last_used_at = now
    return key


def remove(session: Session, user: User, key_id: int, *, required: bool, now: datetime) -> bool:
    """Remove one of the user's keys; KeyRefused if it is the last second factor of an account that needs one."""
    key = session.scalar(select(SecurityKey).where(SecurityKey.id == key_id, SecurityKey.user_id == user.id))
    if key is None:
        return False
    others = session.scalar(
        select(func.count()).select_from(SecurityKey).where(SecurityKey.user_id == user.id, SecurityKey.id != key_id)
    )
    if required and not others and not user.totp_secret:
        raise KeyRefused("Your account needs a second factor: set up an authenticator app before removing this key.")
    session.execute(delete(SecurityKey).where(SecurityKey.id == key.id))
    audit.record(
        session,
        actor_id=user.id,
        action="user.security_key_removed",
        subject_type="user",
        subject_id=user.id,
        before={"key": key.id, "name": key.name},
        after=None,
        now=now,
    )
    return True


def describe(key: SecurityKey) -> str:
    return f"{key.name} (…{bytes_to_base64url(key.credential_id)[-6:]})"
