"""Command-line tools: `flask --app wsgi create-user`, `flask --app wsgi seed-demo`."""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import func, select

from affiliate import delivery, mail
from affiliate.database import reading
from affiliate.demo import record_demo_conversions, send_demo_clicks
from affiliate.demo_shop import credentials as shop_credentials
from affiliate.demo_shop.routes import LANDING_PATH
from affiliate.extensions import db
from affiliate.jobs import accrue_all, policy_of
from affiliate.jobs import purge_clicks as purge_clicks_job
from affiliate.models import (
    STAFF_ROLES,
    ApiKey,
    Click,
    ClickRollup,
    Conversion,
    Link,
    Program,
    Role,
    User,
    UserStatus,
    utcnow,
)
from affiliate.models.programs import AttributionModel, ProgramStatus
from affiliate.services import (
    accounts,
    accrual,
    coupons,
    deliveries,
    erasure,
    groups,
    ledger,
    outbox,
    payouts,
    plans,
    recruiters,
    rollups,
)
from affiliate.services.api_keys import find_key, issue_key, revoke_key
from affiliate.services.commissions import REVENUE, WHOLE_PERIOD, PlanTerms, TierRate
from affiliate.services.links import LinkRequest, create_link
from affiliate.services.programs import ProgramSettings, save_program, snapshot
from affiliate.urls import InvalidUrl, parse_destination
from redirector import Redirector

DEMO_PASSWORD = "clicktrail-demo"  # noqa: S105 - the documented demo password
DEMO_USERS = (
    ("Ada Admin", "admin@demo.clicktrail.example", Role.ADMIN, UserStatus.ACTIVE),
    ("Fiona Finance", "finance@demo.clicktrail.example", Role.FINANCE, UserStatus.ACTIVE),
    ("Felix Finance", "finance2@demo.clicktrail.example", Role.FINANCE, UserStatus.ACTIVE),
    ("Alice Affiliate", "alice@demo.clicktrail.example", Role.AFFILIATE, UserStatus.ACTIVE),
    ("Bob Blogger", "bob@demo.clicktrail.example", Role.AFFILIATE, UserStatus.ACTIVE),
    ("Carol Coupons", "carol@demo.clicktrail.example", Role.AFFILIATE, UserStatus.PENDING),
)
DEMO_CLICKS = 2500
ROLLUP_PROBLEMS_SHOWN = 20
# Alice recruited Bob and has payout details; Bob is in the VIP group.
DEMO_PARTNERS = ("alice@demo.clicktrail.example", "bob@demo.clicktrail.example")
DEMO_DEFAULT_PLAN = PlanTerms(percent_bps=1_000, second_tier_bps=500)
DEMO_VIP_PLAN = PlanTerms(
    percent_bps=1_000,
    tier_basis=REVENUE,
    tier_scope=WHOLE_PERIOD,
    tiers=(TierRate(threshold=30_000, percent_bps=1_200, flat_cents=0),
           TierRate(threshold=100_000, percent_bps=1_500, flat_cents=0)),
    second_tier_bps=500,
)  # fmt: skip
SHOP_CHECKOUT = f"{LANDING_PATH}checkout?product="  # deep links into the demo shop
DEMO_LINKS = (
    ("alice@demo.clicktrail.example", "Newsletter", ("weekly", None, None, None, None), None),
    ("alice@demo.clicktrail.example", "Blog sidebar", ("sidebar", "v2", None, None, None), f"{SHOP_CHECKOUT}knife"),
    ("alice@demo.clicktrail.example", "Instagram bio", (None,) * 5, f"{SHOP_CHECKOUT}kettle"),
    ("bob@demo.clicktrail.example", "YouTube description", ("video-42", None, None, None, None), None),
    ("bob@demo.clicktrail.example", "Podcast", (None,) * 5, f"{SHOP_CHECKOUT}cookbook"),
)
# Without the demo shop (see demo_program_settings) the demo program points at this placeholder merchant.
DEMO_PROGRAM = ProgramSettings(
    name="Demo Store",
    description="Earn on every signup and sale you send to the Demo Store.",
    status=ProgramStatus.ACTIVE,
    destination_url="https://shop.example.com/signup",
    allowed_hosts=("shop.example.com", "www.example.com"),
    fallback_url="https://shop.example.com/",
    attribution_window_days=30,
    cookie_days=30,
    attribution_model=AttributionModel.LAST_CLICK,
    hold_days=7,  # most demo sales are past it, so there is money to pay out at once
    currency="USD",
    minimum_payout_cents=5000,
)
DEMO_SHOP_KEY_NAME = "Demo shop checkout"


@click.command("create-user")
@with_appcontext
@click.option("--email", required=True, help="Sign-in email of the new account.")
@click.option("--name", default=None, help="Display name (defaults to the email's local part).")
@click.option("--role", type=click.Choice([role.value for role in Role]), required=True)
@click.option(
    "--password-env",
    default="CLICKTRAIL_PASSWORD",
    show_default=True,
    help="Environment variable holding the password; prompted for when unset.",
)
def create_user(email: str, name: str | None, role: str, password_env: str) -> None:
    """Create an active account with the given role."""
    password = os.environ.get(password_env) or click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        accounts.check_password(password, min_length=current_app.config["PASSWORD_MIN_LENGTH"], email=email)
        # Hashed before the write transaction opens: on SQLite that holds the one write lock.
        password_hash = current_app.extensions["clicktrail.hasher"].hash(password)
        user = accounts.create_user(
            db.session,
            name=name or email.split("@")[0],
            email=email,
            password_hash=password_hash,
            role=Role(role),
            status=UserStatus.ACTIVE,
            now=utcnow(),
        )
    except accounts.AccountError as error:
        raise click.ClickException(str(error)) from None
    db.session.commit()
    click.echo(f"Created {user.role} {user.email} (referral code {user.referral_code}).")


DEMO_COUPON = ("bob@demo.clicktrail.example", "BOBSBLOG", "10% off your first order")


def _ensure_demo_coupon(program: Program, admin: User) -> None:
    """Bob's code for his readers: typed at the demo shop's checkout, it credits him without a click."""
    email, code, discount = DEMO_COUPON
    owner = db.session.scalar(select(User).where(User.email == email))
    if owner is None or coupons.find(db.session, program.id, code) is not None:
        return
    try:
        coupons.create(db.session, program, owner, coupons.CouponSettings(code, discount), actor=admin, now=utcnow())
    except coupons.CouponError as error:
        click.echo(f"Demo coupon not made: {error}")
        db.session.rollback()
        return
    db.session.commit()
    click.echo(f"Demo coupon {code} belongs to {owner.name}.")


@click.command("seed-demo")
@with_appcontext
@click.option(
    "--if-empty", is_flag=True, help="Add no data when the database has users (a demo's rollups and shop are checked)."
)
def seed_demo(if_empty: bool) -> None:
    """Create demo staff, affiliates, a program, links, clicks and the demo shop's key; a second run adds nothing."""
    if if_empty and db.session.scalar(select(func.count()).select_from(User)):
        admin = db.session.scalar(select(User).where(User.email == DEMO_USERS[0][1]))
        if admin is not None:
            _ensure_click_rollups()
            program = db.session.scalar(select(Program).where(Program.name == DEMO_PROGRAM.name))
            if program is not None:
                _ensure_demo_shop(program, admin)
                _ensure_demo_coupon(program, admin)
                _print_demo_shop_link(program)
            _print_demo_logins()
        else:
            click.echo("Database already has users; demo data not seeded.")
        return
    db.session.commit()  # end the transaction that read the users, so the hash below holds no lock
    now = utcnow()
    demo_hash = current_app.extensions["clicktrail.hasher"].hash(DEMO_PASSWORD)
    admin = None
    for name, email, role, status in DEMO_USERS:
        user = db.session.scalar(select(User).where(User.email == email))
        if user is None:
            user = accounts.create_user(
                db.session,
                name=name,
                email=email,
                password_hash=demo_hash,
                role=role,
                status=status,
                now=now,
                website="https://blog.example.com" if role == Role.AFFILIATE else None,
                promotion="A cooking blog with 40k monthly readers." if role == Role.AFFILIATE else None,
            )
        if role == Role.ADMIN:
            admin = user
    program = db.session.scalar(select(Program).where(Program.name == DEMO_PROGRAM.name))
    if program is None:
        program = save_program(db.session, None, demo_program_settings(current_app.config), actor=admin, now=now)
    db.session.commit()
    _ensure_demo_shop(program, admin)
    if db.session.scalar(select(func.count()).select_from(Link)) == 0:
        loopback = current_app.config["ALLOW_HTTP_LOOPBACK_DESTINATIONS"]
        for email, campaign, subs, deep_link in DEMO_LINKS:
            owner = db.session.scalar(select(User).where(User.email == email))
            request = LinkRequest(program_id=program.id, campaign=campaign, subs=subs, deep_link=deep_link)
            create_link(db.session, owner, request, now=now, allow_http_loopback=loopback)
    db.session.commit()
    _ensure_demo_coupon(program, admin)
    if db.session.scalar(select(func.count()).select_from(Click)) == 0:
        codes = list(db.session.scalars(select(Link.code).order_by(Link.id)))
        db.session.commit()  # end our transaction: on SQLite it holds the write lock the redirector needs
        config = dict(current_app.config)
        # Through the real redirector and ingester, so the click rollups the reports read fill as they would live.
        landed = send_demo_clicks(lambda clock: Redirector(config, clock=clock), codes, DEMO_CLICKS, now)
        click.echo(f"Sent {landed} demo clicks through the redirector.")
    _ensure_click_rollups()
    if db.session.scalar(select(func.count()).select_from(Conversion)) == 0:
        _seed_demo_partners(program, admin, utcnow())
        statuses = record_demo_conversions(db.session, program, utcnow())
        db.session.commit()
        summary = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
        click.echo(f"Reported {sum(statuses.values())} demo sales through the conversion service: {summary}.")
        accrued = accrue_all().commissions
        approved = accrual.approve_due(db.session, now=utcnow())
        db.session.commit()
        click.echo(
            f"Accrued {accrued} commissions (10% of each sale, VIP more by revenue); {approved} are past the hold."
        )
    click.echo("Reports: /partner/reports/ (affiliates), /admin/reports/ (admin and finance).")
    _print_demo_shop_link(program)
    _print_demo_logins()


def _seed_demo_partners(program: Program, admin: User, now: datetime) -> None:
    """The program's plans and partners, through the same services the portal uses: the default group's
    10% plan and a VIP group paid by revenue tiers (Bob), Alice as Bob's recruiter, and Alice's payout
    details old enough to be paid, so the payout journey can be walked at once."""
    alice, bob = (db.session.scalar(select(User).where(User.email == email)) for email in DEMO_PARTNERS)
    # Opening terms: the demo's history reaches back before today.
    plans.save_plan(db.session, program.id, DEMO_DEFAULT_PLAN, effective_from=None, actor_id=admin.id, now=now)
    vip = groups.create_group(db.session, program.id, "VIP", actor_id=admin.id, now=now)
    plans.save_plan(db.session, program.id, DEMO_VIP_PLAN, group_id=vip.id, effective_from=None, actor_id=admin.id,
                    now=now)  # fmt: skip
    groups.move(db.session, program.id, [bob.id], vip.id, actor_id=admin.id, now=now)
    recruiters.set_recruiter(db.session, bob, alice.referral_code, actor_id=admin.id, now=now)
    details = accounts.PayoutDetails(method="paypal", email="alice.payouts@example.com", account_name=None, iban=None)
    accounts.update_payout_details(db.session, alice, details, now=now - payouts.COOLING_OFF - timedelta(days=1))
    db.session.commit()


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


def _ensure_demo_shop(program: Program, admin: User) -> None:
    """Point the demo program at the demo shop (or the placeholder) and give the shop its API key.

    A destination an admin chose is left alone; so is a working key. Seeding again after PUBLIC_BASE_URL
    changed, or on a demo database from before the shop, moves the program to the shop's address now.
    """
    config = current_app.config
    wanted = demo_program_settings(config)
    if program.destination_url != wanted.destination_url and _seeded_destination(program.destination_url):
        moved = replace(ProgramSettings(**snapshot(program)), destination_url=wanted.destination_url,
                        allowed_hosts=wanted.allowed_hosts, fallback_url=wanted.fallback_url)  # fmt: skip
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


def _ensure_click_rollups() -> None:
    """Count clicks stored before the click rollups existed (a demo seeded by an older version) for the reports."""
    if db.session.scalar(select(ClickRollup.day).limit(1)) is None and db.session.scalar(select(Click.id).limit(1)):
        db.session.commit()
        _rebuild_rollups()
    db.session.commit()


def _print_demo_shop_link(program: Program) -> None:
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
    click.echo("has the affiliate's IP, and the self_referral rule rejects sales from where the affiliate signed in.")


def _print_demo_logins() -> None:
    click.echo(f"Demo data ready. Sign in with any of these (password: {DEMO_PASSWORD}):")
    for _, email, role, status in DEMO_USERS:
        note = "  (application pending)" if status == UserStatus.PENDING else ""
        if role in STAFF_ROLES:
            note = "  (sets up two-factor sign-in at first sign-in)"
        click.echo(f"  {role.value:<9} {email}{note}")
    click.echo(
        "Mail (password resets, confirmations, notifications) waits on the admin's Outbox page until SMTP_HOST is set."
    )


@click.command("ingest-clicks")
@with_appcontext
def ingest_clicks() -> None:
    """Move clicks left in the click log (by a stopped or killed redirector) into the database."""
    redirector = Redirector(dict(current_app.config))
    try:
        moved = redirector.recorder.ingest()
    finally:
        redirector.close()
    if not redirector.recorder.database_ok:
        raise click.ClickException("the database refused the clicks; they stay in the click log")
    click.echo(f"Ingested {moved} clicks from {current_app.config['CLICK_LOG_DIR']}.")


LOOP_OPTIONS = (
    click.option("--loop", "forever", is_flag=True, help="Keep sending as messages become due, until stopped."),
    click.option("--every", type=click.FloatRange(0.1, 3600), default=2.0, show_default=True,
                 help="Seconds between rounds with --loop."),
)  # fmt: skip


def _looped(command):
    for option in reversed(LOOP_OPTIONS):
        command = option(command)
    return command


def _send_rounds(send_round, waiting, forever: bool, every: float) -> None:
    """Run a sender's rounds once, or until stopped: a round that found work is followed at once."""
    while True:
        sent, failed = send_round()
        if sent or failed:
            click.echo(f"sent {sent}, failed {failed} (retried later), waiting {waiting(db.session)}")
        db.session.commit()
        if not forever:
            return
        if not sent or failed:
            time.sleep(every)


@click.command("send-mail")
@_looped
@with_appcontext
def send_mail(forever: bool, every: float) -> None:
    """Send the mail waiting in the outbox through SMTP_HOST (the portal's own sender does this too)."""
    if not mail.smtp_configured():
        raise click.ClickException("SMTP_HOST is not set: mail stays in the outbox (the admin's Outbox page).")
    _send_rounds(mail.send_due, outbox.waiting, forever, every)


@click.command("send-webhooks")
@_looped
@with_appcontext
def send_webhooks(forever: bool, every: float) -> None:
    """Deliver the webhooks and postbacks that are due (the portal's own sender does this too)."""
    _send_rounds(delivery.send_due, deliveries.waiting, forever, every)


@click.command("ledger-check")
@with_appcontext
def ledger_check() -> None:
    """Verify the ledger's invariants and that every amount is the rules' (docs/money.md); exit 1 if any fails."""
    problems = ledger.check(db.session) + accrual.check(db.session)
    db.session.rollback()
    for problem in problems:
        click.echo(f"FAILED {problem.invariant}: {problem.detail}", err=True)
    if problems:
        raise SystemExit(1)
    click.echo("Ledger invariants hold.")


@click.command("accrue-commissions")
@with_appcontext
def accrue_commissions() -> None:
    """Evaluate the conversions that wait (pending commissions and their accruals) and reverse new refunds."""
    tally = accrue_all()
    click.echo(
        f"Accrued {tally.commissions} commissions for {tally.conversions} conversions evaluated; "
        f"reversed {tally.reversed_cents} cents for refunds."
    )


@click.command("approve-due")
@click.option("--days-ahead", type=click.IntRange(0, 3650), default=0,
              help="Act as if this many days had passed (to show the hold ending in a demo).")  # fmt: skip
@with_appcontext
def approve_due(days_ahead: int) -> None:
    """Approve by rule the pending commissions whose hold has passed (conversions under review wait)."""
    approved = accrual.approve_due(db.session, now=utcnow() + timedelta(days=days_ahead))
    db.session.commit()
    click.echo(f"Approved {approved} commissions.")


@click.command("rollup")
@click.option("--rebuild", is_flag=True, help="Recompute the rollups from raw clicks, conversions and commissions.")
@click.option("--check", is_flag=True, help="Compare the rollups with what they sum up; exit 1 if any differ.")
@with_appcontext
def rollup(rebuild: bool, check: bool) -> None:
    """Rebuild or check the rollups reports read (days whose raw clicks were purged keep their click rollups)."""
    if not (rebuild or check):
        raise click.UsageError("Say what to do: --rebuild, --check, or both.")
    if rebuild:
        _rebuild_rollups()
        rollups.rebuild_money(db.session)
        db.session.commit()
        click.echo("Rebuilt the conversion and commission rollups.")
    if check:
        with reading(db.session):
            problems = [
                f"click_rollups {day} affiliate {affiliate_id} program {program_id} {dimension}={value!r}: "
                f"stored {have or [0, 0, 0]}, raw clicks give {want or [0, 0, 0]}"
                for (dimension, day, affiliate_id, program_id, value), have, want in rollups.differences(db.session)
            ]
            problems += [f"{table} {key}: stored {have}, recomputed {want}"
                         for table, key, have, want in rollups.money_differences(db.session)]  # fmt: skip
        for problem in problems[:ROLLUP_PROBLEMS_SHOWN]:
            click.echo(f"DIFFERS {problem}", err=True)
        if problems:
            click.echo(f"{len(problems)} rollup rows differ from what they sum up; run rollup --rebuild.", err=True)
            raise SystemExit(1)
        click.echo("Rollups agree with raw clicks, conversions and commissions.")


def _rebuild_rollups() -> None:
    try:
        job = rollups.start_rebuild(db.session, now=utcnow())
    except rollups.MaintenanceBusy as error:
        db.session.rollback()
        raise click.ClickException(str(error)) from None
    db.session.commit()
    try:
        total = db.session.scalar(select(func.count()).select_from(Click).where(Click.id <= job.last_id))
        db.session.commit()
        after = 0
        with click.progressbar(length=total, label="Rebuilding click rollups") as bar:
            while True:
                after, read = rollups.rebuild_chunk(db.session, job, after, now=utcnow())
                db.session.commit()
                if not read:
                    break
                bar.update(read)
    finally:
        db.session.rollback()
        rollups.finish_rebuild(db.session, job)
        db.session.commit()
    kept = f" (days from {job.since}; earlier days' raw clicks were purged, so they kept their rollups)"
    click.echo(f"Rebuilt the click rollups from {total} clicks{kept if job.since else ''}.")


@click.command("purge-clicks")
@click.option("--dry-run", is_flag=True, help="Count what would change, and change nothing.")
@with_appcontext
def purge_clicks(dry_run: bool) -> None:
    """Blur old IPs and user agents and delete old raw clicks, as CLICK_*_DAYS say; rollups and money's clicks stay."""
    policy = policy_of(current_app.config)
    if not policy.anything:
        click.echo("Nothing to do: CLICK_RETENTION_DAYS, CLICK_IP_DAYS and CLICK_USER_AGENT_DAYS are all 0 (keep).")
        return

    def progress(windows):
        with click.progressbar(windows, label="Going through raw clicks") as bar:
            yield from bar

    try:
        limits, counts = purge_clicks_job(policy, dry_run=dry_run, progress=progress)
    except rollups.MaintenanceBusy as error:
        raise click.ClickException(str(error)) from None
    if limits.purge_before and policy.retention_days < limits.floor_days:
        click.echo(f"Raw clicks are kept {limits.floor_days} days, not {policy.retention_days}: a program's "
                   "attribution window (or fraud screening's history) still needs them.")  # fmt: skip
    if limits.ip_before and policy.ip_days < limits.floor_days:
        click.echo(f"IP addresses are kept {limits.floor_days} days, not {policy.ip_days}: self-referral "
                   "screening compares them with conversions for as long as a click can be credited.")  # fmt: skip
    done = {"delete": "Deleted", "truncate": "Truncated", "drop": "Dropped"}

    def did(action: str) -> str:
        return f"Would {action}" if dry_run else done[action]

    if limits.purge_before:
        click.echo(f"{did('delete')} {counts.deleted} raw clicks from before {limits.purge_before.date()} (UTC); "
                   f"{counts.kept} kept, as conversions or referrals point at them.")  # fmt: skip
    if limits.ip_before:
        click.echo(f"{did(policy.ip_mode)} {counts.ips} IP addresses of clicks before "
                   f"{limits.ip_before:%Y-%m-%d %H:%M} UTC.")  # fmt: skip
    if limits.user_agent_before:
        click.echo(f"{did(policy.user_agent_mode)} {counts.user_agents} user agents of clicks before "
                   f"{limits.user_agent_before:%Y-%m-%d %H:%M} UTC.")  # fmt: skip
    if not dry_run:
        click.echo("Rollups are untouched: reports keep every day's counts.")


@click.command("erase-person")
@click.option("--email", help="The person's email (as a customer or a member).")
@click.option("--customer-id", help="The merchant's customer id for them.")
@click.option("--visitor-id", help="Their visitor cookie.")
@click.option("--click-id", help="A click of theirs (the ct_click value).")
@click.option("--yes", is_flag=True, help="Erase without asking (for scripts).")
@with_appcontext
def erase_person(email: str | None, customer_id: str | None, visitor_id: str | None, click_id: str | None,
                 yes: bool) -> None:  # fmt: skip
    """Pseudonymise a person's clicks, conversions and member account; money, reports and the ledger stay whole."""
    given = [(kind, value) for kind, value in (("email", email), ("customer_id", customer_id),
             ("visitor_id", visitor_id), ("click_id", click_id)) if value is not None]  # fmt: skip
    if len(given) != 1:
        raise click.UsageError("Name the person by exactly one of --email, --customer-id, --visitor-id, --click-id.")
    kind, value = given[0]
    try:
        with reading(db.session):
            found = erasure.find(db.session, kind, value)
    except erasure.NothingToErase as error:
        raise click.UsageError(str(error)) from None
    click.echo(f"Found {len(found.clicks)} clicks, {len(found.conversions)} conversions and "
               f"{len(found.members)} member accounts.")  # fmt: skip
    if not yes and not found.empty:
        click.confirm("Pseudonymise them? This cannot be undone", abort=True)
    erased = erasure.erase(db.session, kind, value, actor_id=None, now=utcnow(), via="flask erase-person")
    db.session.commit()
    changed = erased.changed
    click.echo(f"Pseudonymised {changed['clicks']} clicks, {changed['conversions']} conversions, "
               f"{changed['members']} member accounts ({changed['sign_ins']} sign-ins); "
               "rows pseudonymised before are left as they are. "
               "Amounts, commissions, the ledger and reports are unchanged.")  # fmt: skip


commands = (
    create_user,
    seed_demo,
    ingest_clicks,
    ledger_check,
    send_mail,
    send_webhooks,
    accrue_commissions,
    approve_due,
    rollup,
    purge_clicks,
    erase_person,
)
