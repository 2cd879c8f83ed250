"""Command-line tools: `flask --app wsgi create-user`, `flask --app wsgi seed-demo` and the maintenance commands."""

from __future__ import annotations

import math
import os
import time
from functools import partial

import click
from email_validator import EmailNotValidError, validate_email
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import func, select

from affiliate import delivery, jobs, mail
from affiliate.database import reading, retrying
from affiliate.demo import seed
from affiliate.extensions import db
from affiliate.jobs import accrue_all, attribute_waiting, policy_of
from affiliate.jobs import purge_clicks as purge_clicks_job
from affiliate.models import Click, Role, UserStatus, utcnow
from affiliate.services import accounts, deliveries, erasure, ledger, money_checks, outbox, rollups
from affiliate.validators import UNSTORABLE_MESSAGE, unstorable
from redirector import Redirector
from redirector.clickstore import REJECTED_NAME

ROLLUP_PROBLEMS_SHOWN = 20


EMAIL_MAX = 254
NAME_MAX = 120  # the users.name column


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
    try:
        email = validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise click.BadParameter(str(error), param_hint="--email") from None
    if len(email) > EMAIL_MAX:
        raise click.BadParameter(f"at most {EMAIL_MAX} characters", param_hint="--email")
    if name is not None and (not name.strip() or len(name) > NAME_MAX or unstorable(name)):
        raise click.BadParameter(f"1 to {NAME_MAX} characters, {UNSTORABLE_MESSAGE}", param_hint="--name")
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


@click.command("seed-demo")
@with_appcontext
@click.option(
    "--if-empty", is_flag=True, help="Add no data when the database has users (a demo's rollups and shop are checked)."
)
def seed_demo(if_empty: bool) -> None:
    """Create demo staff, affiliates, a program, links, clicks and the demo shop's key; a second run adds nothing."""
    seed.run(if_empty, rebuild_click_rollups=_rebuild_rollups)


@click.command("ingest-clicks")
@click.option(
    "--rejected",
    is_flag=True,
    help=f"Offer again the clicks the database refused, kept in {REJECTED_NAME} beside the click log, once the "
    "cause is mended; those refused again stay there.",
)
@with_appcontext
def ingest_clicks(rejected: bool) -> None:
    """Move clicks left in the click log (by a stopped or killed redirector) into the database."""
    redirector = Redirector(dict(current_app.config))
    try:
        moved = redirector.recorder.offer_rejected() if rejected else redirector.recorder.ingest()
    finally:
        redirector.close()
    if not redirector.recorder.database_ok:
        raise click.ClickException("the database refused the clicks; they stay in the click log")
    click.echo(f"Ingested {moved} clicks from {current_app.config['CLICK_LOG_DIR']}.")


LOOP_OPTIONS = (
    click.option("--loop", "forever", is_flag=True, help="Keep sending as messages become due, until stopped."),
    click.option(
        "--every",
        type=click.FloatRange(0.1, 3600),
        callback=lambda _context, _param, value: _finite(value),
        default=2.0,
        show_default=True,
        help="Seconds between rounds with --loop.",
    ),
)


def _finite(value: float) -> float:
    """FloatRange lets NaN through (it compares false with both bounds)."""
    if not math.isfinite(value):
        raise click.BadParameter("a number of seconds from 0.1 to 3600")
    return value


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
    problems = ledger.check(db.session) + money_checks.check(db.session)
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
    tally = retrying(db.session, accrue_all)
    click.echo(
        f"Accrued {tally.commissions} commissions for {tally.conversions} conversions evaluated; "
        f"reversed {tally.reversed_cents} cents for refunds."
    )


@click.command("attribute-waiting")
@with_appcontext
def attribute_waiting_conversions() -> None:
    """Attribute the conversions that waited for a click now stored; attribute without it those waited for too long."""
    swept = retrying(db.session, attribute_waiting)
    click.echo(
        f"Attributed {swept.attributed} conversions whose click was stored; "
        f"{swept.given_up} attributed without a click that never came."
    )


@click.command("approve-due")
@click.option(
    "--days-ahead",
    type=click.IntRange(0, 3650),
    default=0,
    help="Act as if this many days had passed (to show the hold ending in a demo).",
)
@with_appcontext
def approve_due(days_ahead: int) -> None:
    """Approve by rule the pending commissions whose hold has passed (conversions under review wait)."""
    approved = retrying(db.session, partial(jobs.approve_due, days_ahead=days_ahead))
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
            problems += [
                f"{table} {key}: stored {have}, recomputed {want}"
                for table, key, have, want in rollups.money_differences(db.session)
            ]
        for problem in problems[:ROLLUP_PROBLEMS_SHOWN]:
            click.echo(f"DIFFERS {problem}", err=True)
        if problems:
            click.echo(f"{len(problems)} rollup rows differ from what they sum up; run rollup --rebuild.", err=True)
            raise SystemExit(1)
        click.echo("Rollups agree with raw clicks, conversions and commissions.")


def _rebuild_rollups() -> None:
    """Recount the click rollups from raw clicks, one chunk per transaction, under the rollups' lease."""
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
        click.echo(
            f"Raw clicks are kept {limits.floor_days} days, not {policy.retention_days}: a program's "
            "attribution window (a back-dated sale looks one window further back), or fraud screening's history, "
            "still needs them."
        )
    if limits.ip_before and policy.ip_days < limits.floor_days:
        click.echo(
            f"IP addresses are kept {limits.floor_days} days, not {policy.ip_days}: self-referral "
            "screening compares them with conversions for as long as a click can be credited."
        )
    done = {"delete": "Deleted", "truncate": "Truncated", "drop": "Dropped"}

    def did(action: str) -> str:
        return f"Would {action}" if dry_run else done[action]

    if limits.purge_before:
        click.echo(
            f"{did('delete')} {counts.deleted} raw clicks from before {limits.purge_before.date()} (UTC); "
            f"{counts.kept} kept, as conversions or referrals point at them."
        )
    if limits.ip_before:
        click.echo(
            f"{did(policy.ip_mode)} {counts.ips} IP addresses of clicks before {limits.ip_before:%Y-%m-%d %H:%M} UTC."
        )
    if limits.user_agent_before:
        click.echo(
            f"{did(policy.user_agent_mode)} {counts.user_agents} user agents of clicks before "
            f"{limits.user_agent_before:%Y-%m-%d %H:%M} UTC."
        )
    if not dry_run:
        click.echo("Rollups are untouched: reports keep every day's counts.")


@click.command("erase-person")
@click.option("--email", help="The person's email (as a customer or a member).")
@click.option("--customer-id", help="The merchant's customer id for them.")
@click.option("--visitor-id", help="Their visitor cookie.")
@click.option("--click-id", help="A click of theirs (the ct_click value).")
@click.option("--yes", is_flag=True, help="Erase without asking (for scripts).")
@with_appcontext
def erase_person(
    email: str | None, customer_id: str | None, visitor_id: str | None, click_id: str | None, yes: bool
) -> None:
    """Pseudonymise a person's clicks, conversions and member account; money, reports and the ledger stay whole."""
    given = [
        (kind, value)
        for kind, value in (
            ("email", email),
            ("customer_id", customer_id),
            ("visitor_id", visitor_id),
            ("click_id", click_id),
        )
        if value is not None
    ]
    if len(given) != 1:
        raise click.UsageError("Name the person by exactly one of --email, --customer-id, --visitor-id, --click-id.")
    kind, value = given[0]
    if unstorable(value) or len(value) > 320:
        raise click.UsageError(f"--{kind.replace('_', '-')}: at most 320 characters, and {UNSTORABLE_MESSAGE}.")
    try:
        with reading(db.session):
            found = erasure.find(db.session, kind, value)
    except erasure.NothingToErase as error:
        raise click.UsageError(str(error)) from None
    click.echo(
        f"Found {len(found.clicks)} clicks, {len(found.conversions)} conversions and "
        f"{len(found.members)} member accounts."
    )
    if not yes and not found.empty:
        click.confirm("Pseudonymise them? This cannot be undone", abort=True)
    erased = erasure.erase(
        db.session,
        kind,
        value,
        actor_id=None,
        now=utcnow(),
        via="flask erase-person",
        secret=current_app.config["SECRET_KEY"],
    )
    db.session.commit()
    changed = erased.changed
    click.echo(
        f"Pseudonymised {changed['clicks']} clicks, {changed['conversions']} conversions, "
        f"{changed['members']} member accounts ({changed['sign_ins']} sign-ins); "
        "rows pseudonymised before are left as they are. "
        "Amounts, commissions, the ledger and reports are unchanged."
    )


commands = (
    create_user,
    seed_demo,
    ingest_clicks,
    ledger_check,
    send_mail,
    send_webhooks,
    attribute_waiting_conversions,
    accrue_commissions,
    approve_due,
    rollup,
    purge_clicks,
    erase_person,
)
