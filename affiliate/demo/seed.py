"""Seeding the demo: staff, affiliates, a program, links, a month of clicks and sales, through the real services."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import click
from flask import current_app
from sqlalchemy import func, select

from affiliate.demo import (
    DEMO_CLICKS,
    DEMO_COUPON,
    DEMO_DEFAULT_PLAN,
    DEMO_LINKS,
    DEMO_PARTNERS,
    DEMO_PASSWORD,
    DEMO_PROGRAM,
    DEMO_USERS,
    DEMO_VIP_PLAN,
)
from affiliate.demo.shop import demo_program_settings, ensure_demo_shop, print_demo_shop_link
from affiliate.demo.traffic import record_demo_conversions, send_demo_clicks
from affiliate.extensions import db
from affiliate.jobs import accrue_all
from affiliate.models import STAFF_ROLES, Click, ClickRollup, Conversion, Link, Program, Role, User, UserStatus, utcnow
from affiliate.services import accounts, accrual, coupons, groups, payouts, plans, recruiters
from affiliate.services.links import LinkRequest, create_link
from affiliate.services.programs import save_program
from redirector import Redirector


def run(if_empty: bool, *, rebuild_click_rollups: Callable[[], None]) -> None:
    """Create demo staff, affiliates, a program, links, clicks and the demo shop's key; a second run adds nothing.

    ``rebuild_click_rollups`` is the `rollup --rebuild` command's click step, for a demo seeded before the rollups.
    """
    if if_empty and db.session.scalar(select(func.count()).select_from(User)):
        admin = db.session.scalar(select(User).where(User.email == DEMO_USERS[0][1]))
        if admin is not None:
            _ensure_click_rollups(rebuild_click_rollups)
            program = db.session.scalar(select(Program).where(Program.name == DEMO_PROGRAM.name))
            if program is not None:
                ensure_demo_shop(program, admin)
                _ensure_demo_coupon(program, admin)
                print_demo_shop_link(program)
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
    ensure_demo_shop(program, admin)
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
    _ensure_click_rollups(rebuild_click_rollups)
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
    print_demo_shop_link(program)
    _print_demo_logins()


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


def _seed_demo_partners(program: Program, admin: User, now: datetime) -> None:
    """The program's plans and partners, through the same services the portal uses: the default group's
    10% plan and a VIP group paid by revenue tiers (Bob), Alice as Bob's recruiter, and Alice's payout
    details old enough to be paid, so the payout journey can be walked at once."""
    alice, bob = (db.session.scalar(select(User).where(User.email == email)) for email in DEMO_PARTNERS)
    # Opening terms: the demo's history reaches back before today.
    plans.save_plan(db.session, program.id, DEMO_DEFAULT_PLAN, effective_from=None, actor_id=admin.id, now=now)
    vip = groups.create_group(db.session, program.id, "VIP", actor_id=admin.id, now=now)
    plans.save_plan(
        db.session, program.id, DEMO_VIP_PLAN, group_id=vip.id, effective_from=None, actor_id=admin.id, now=now
    )
    groups.move(db.session, program.id, [bob.id], vip.id, actor_id=admin.id, now=now)
    recruiters.set_recruiter(db.session, bob, alice.referral_code, actor_id=admin.id, now=now)
    details = accounts.PayoutDetails(method="paypal", email="alice.payouts@example.com", account_name=None, iban=None)
    accounts.update_payout_details(db.session, alice, details, now=now - payouts.COOLING_OFF - timedelta(days=1))
    db.session.commit()


def _ensure_click_rollups(rebuild_click_rollups: Callable[[], None]) -> None:
    """Count clicks stored before the click rollups existed (a demo seeded by an older version) for the reports."""
    if db.session.scalar(select(ClickRollup.day).limit(1)) is None and db.session.scalar(select(Click.id).limit(1)):
        db.session.commit()
        rebuild_click_rollups()
    db.session.commit()


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
