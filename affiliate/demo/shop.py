"""The demo shop's place in the demo: the demo program sends shoppers to it, and it holds the program's API key."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import click
from flask import current_app
from sqlalchemy import select

from affiliate.demo import DEMO_PROGRAM, DEMO_SHOP_KEY_NAME
from affiliate.demo_shop import credentials as shop_credentials
from affiliate.demo_shop.routes import LANDING_PATH
from affiliate.extensions import db
from affiliate.models import ApiKey, Link, Program, User, utcnow
from affiliate.services.api_keys import find_key, issue_key, revoke_key
from affiliate.services.programs import ProgramSettings, save_program, snapshot
from affiliate.urls import InvalidUrl, parse_destination


def demo_shop_url(config: Mapping) -> str | None:
    """The demo shop's landing page, if this app serves it at an address a program may send shoppers to.

    That is an https PUBLIC_BASE_URL, or loopback http (`make run`'s http://127.0.0.1:8000) with
    ALLOW_HTTP_LOOPBACK_DESTINATIONS on; anything else (say http://0.0.0.0:8000) gets None.
    """
    if not config["DEMO_SHOP"]:
        return None
    try:
        return parse_destination(
            config["PUBLIC_BASE_URL"].rstrip("/") + LANDING_PATH,
            allow_http_loopback=config["ALLOW_HTTP_LOOPBACK_DESTINATIONS"],
        )
    except InvalidUrl:
        return None


def demo_program_settings(config: Mapping) -> ProgramSettings:
    """The demo program: sending shoppers to the demo shop when it can, else to the placeholder merchant."""
    shop = demo_shop_url(config)
    if shop is None:
        return DEMO_PROGRAM
    return replace(DEMO_PROGRAM, destination_url=shop, allowed_hosts=(), fallback_url=shop)


def _seeded_destination(url: str) -> bool:
    """Whether seed-demo set this destination (the placeholder, or a demo shop at some address), not an admin."""
    return url == DEMO_PROGRAM.destination_url or urlsplit(url).path == LANDING_PATH


def ensure_demo_shop(program: Program, admin: User) -> None:
    """Point the demo program at the demo shop (or the placeholder) and give the shop its API key.

    A destination an admin chose is left alone; so is a working key. Seeding again after PUBLIC_BASE_URL
    changed, or on a demo database from before the shop, moves the program to the shop's address now.
    """
    config = current_app.config
    wanted = demo_program_settings(config)
    if program.destination_url != wanted.destination_url and _seeded_destination(program.destination_url):
        moved = replace(
            ProgramSettings(**snapshot(program)),
            destination_url=wanted.destination_url,
            allowed_hosts=wanted.allowed_hosts,
            fallback_url=wanted.fallback_url,
        )
        save_program(db.session, program, moved, actor=admin, now=utcnow())
        db.session.commit()
    if config["DEMO_SHOP"]:
        path = shop_credentials.credentials_path(config["INSTANCE_PATH"])
        _ensure_shop_credentials(program, admin, path)
        click.echo(f"Demo shop: {demo_shop_url(config) or LANDING_PATH} (its API key is in {path}).")
    if program.destination_url == DEMO_PROGRAM.destination_url:
        click.echo(
            f"The {program.name} program sends shoppers to the placeholder {program.destination_url}: the demo shop "
            "needs an https PUBLIC_BASE_URL, or http on 127.0.0.1 with ALLOW_HTTP_LOOPBACK_DESTINATIONS=1 "
            "(as `make run` sets)."
        )
    else:
        click.echo(f"The {program.name} program sends shoppers to {program.destination_url}.")


def _ensure_shop_credentials(program: Program, admin: User, path: Path) -> None:
    """Keep the shop's key if it still works for the program; else revoke the shop's old keys and issue one."""
    try:
        kept = shop_credentials.load(path)
    except shop_credentials.CredentialsMissing:
        kept = None
    if kept is not None and kept.program_id == program.id and kept.currency == program.currency:
        key = find_key(db.session, kept.api_key)
        if key is not None and key.program_id == program.id:
            if not hmac.compare_digest(kept.signing_secret, key.signing_secret):
                # An admin rotated the signing secret: the shop, like any merchant, signs with the new one.
                shop_credentials.save(path, replace(kept, signing_secret=key.signing_secret))
            db.session.commit()
            return
    now = utcnow()
    stale = select(ApiKey).where(
        ApiKey.program_id == program.id, ApiKey.name == DEMO_SHOP_KEY_NAME, ApiKey.revoked_at.is_(None)
    )
    for key in db.session.scalars(stale).all():
        revoke_key(db.session, key, actor=admin, now=now)
    issued = issue_key(db.session, program, DEMO_SHOP_KEY_NAME, actor=admin, now=now)
    db.session.commit()
    shop_credentials.save(
        path, shop_credentials.ShopCredentials(program.id, program.currency, issued.token, issued.signing_secret)
    )
    click.echo(f"Issued the demo shop an API key for the {program.name} program ({issued.key.prefix}).")


def print_demo_shop_link(program: Program) -> None:
    """Name a demo link to follow into the demo shop, when the demo program sends shoppers there."""
    link = db.session.scalar(
        select(Link).where(Link.program_id == program.id, Link.active.is_(True)).order_by(Link.id).limit(1)
    )
    if link is None or urlsplit(program.destination_url).path != LANDING_PATH:
        return
    owner = db.session.get(User, link.affiliate_id)
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    click.echo(f"Try the whole loop: open {base}/r/{link.code} ({owner.name}'s link), buy something in the demo shop,")
    click.echo(f"then sign in as {owner.email} to see the sale. Sign in afterwards: on one machine the shopper")
    click.echo("has the affiliate's IP, and the self-referral rule rejects sales from where the affiliate signed in.")
