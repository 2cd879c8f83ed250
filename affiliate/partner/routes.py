"""The partner home: what an approved affiliate sees first (their money, the last 30 days, what is left to get
started, and each program's terms), their recruits, and joining programs."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.formatting import count, day
from affiliate.mail import external_url
from affiliate.models import Program, Role, utcnow
from affiliate.money import format_amount
from affiliate.notifications import PAYOUT_METHODS
from affiliate.reports.charts import bar_chart
from affiliate.services import enrollment, links, partner_home, recruiters
from affiliate.services.commissions import REVENUE, TierRate
from affiliate.services.plans import bps_to_percent, in_words
from affiliate.services.standing import Progress, progress

RECENT_REFERRALS = 10

bp = Blueprint("partner", __name__, url_prefix="/partner")
bp.before_request(require_roles(Role.AFFILIATE, active_affiliate=True))


@bp.route("/")
def home():
    standings = enrollment.standings(db.session, current_user.id)
    link_count = links.count_of(db.session, current_user.id)
    referrals = recruiters.referrals_by(db.session, current_user.id, RECENT_REFERRALS)
    referral_count = recruiters.referral_count(db.session, current_user.id)
    recruit_count = recruiters.recruit_count(db.session, current_user.id)
    now = utcnow()
    pays = {}
    for entry in standings:
        program = entry.program
        standing = progress(db.session, program.id, current_user.id, now)
        pays[program.id] = (in_words(standing.terms, program.currency), standing_in_words(standing, program.currency))
    recent = partner_home.recent(db.session, current_user.id, today=now.date())
    return render_template(
        "partner/home.html",
        user=current_user,
        standings=standings,
        link_count=link_count,
        referrals=referrals,
        referral_count=referral_count,
        recruit_count=recruit_count,
        pays=pays,
        balances=partner_home.summary(db.session, current_user, now=now),
        steps=partner_home.first_steps(
            db.session, current_user, enrolled=any(entry.can_promote for entry in standings), links=link_count
        ),
        recent=recent,
        charts=_charts(recent),
        payout_methods=PAYOUT_METHODS,
    )


def _charts(recent: partner_home.Recent) -> list:
    """The last 30 days drawn: human clicks, sales, and earnings in each currency earned in."""
    return [
        bar_chart("chart-home-clicks", "Human clicks per day", recent.points("clicks")),
        bar_chart("chart-home-sales", "Sales per day", recent.points("sales")),
        *(
            bar_chart(
                f"chart-home-earned-{currency.lower()}",
                f"Earned per day, in whole {currency}",
                recent.points("earned", currency),
                total=format_amount(recent.earned[currency], currency),
            )
            for currency in recent.currencies
        ),
    ]


@bp.route("/recruits")
def recruits():
    """The affiliates this one recruited, the second tier each has earned them, and the link that recruits more."""
    return render_template(
        "partner/recruits.html",
        recruits=recruiters.recruits(db.session, current_user.id),
        link=external_url("auth.apply", ref=current_user.referral_code),
    )


@bp.post("/programs/<int:program_id>/apply")
def apply(program_id: int):
    program = db.session.get(Program, program_id) or abort(404)
    try:
        enrollment.apply(db.session, program, current_user, now=utcnow())
    except enrollment.EnrollmentError as error:
        db.session.rollback()
        flash(str(error), "error")
    else:
        db.session.commit()
        flash(f"You applied to {program.name}. An admin will decide; you will see the answer here.", "success")
    return redirect(url_for("partner.home"))


@bp.route("/join/<token>", methods=["GET", "POST"])
def join(token: str):
    """An invitation link: the affiliate confirms, then is enrolled (and put in the invitation's group)."""
    if len(token) > 512:
        abort(404)
    if request.method == "GET":
        return render_template("partner/join.html", token=token)
    try:
        program, group = enrollment.redeem(
            db.session,
            current_app.config["SECRET_KEY"],
            token,
            current_user,
            max_age_days=current_app.config["INVITATION_DAYS"],
            now=utcnow(),
        )
    except enrollment.EnrollmentError as error:
        db.session.rollback()
        flash(str(error), "error")
    else:
        db.session.commit()
        flash(
            f"You joined {program.name}" + (f" in the {group} group" if group else "") + ". Create a link to start.",
            "success",
        )
    return redirect(url_for("partner.home"))


def standing_in_words(standing: Progress, currency: str) -> str:
    """This month's tier progress as a sentence: volume so far and what the next threshold pays."""
    revenue = standing.terms.tier_basis == REVENUE
    so_far = (
        format_amount(standing.volume, currency)
        if revenue
        else f"{count(standing.volume)} sale" + ("s" if standing.volume != 1 else "")
    )
    text = f"This month: {so_far}"
    reached = [tier for tier in standing.terms.tiers if tier.threshold <= standing.volume]
    if reached:
        tier = max(reached, key=lambda tier: tier.threshold)
        start = format_amount(tier.threshold, currency) if revenue else f"{count(tier.threshold)} sales"
        text += f", in the tier from {start} ({_pays(tier, currency)})"
    tier = standing.next_tier
    if tier is not None:
        gap = tier.threshold - standing.volume
        more = format_amount(gap, currency) if revenue else f"{count(gap)} more sale" + ("s" if gap != 1 else "")
        text += f"; {more} to reach {_pays(tier, currency)}"
    last_day = standing.period_end - timedelta(microseconds=1)  # the period's end is the next month's first instant
    return text + f" (the month ends with {day(last_day)}, UTC)."


def _pays(tier: TierRate, currency: str) -> str:
    parts = (
        f"{bps_to_percent(tier.percent_bps)}%" if tier.percent_bps else "",
        format_amount(tier.flat_cents, currency) if tier.flat_cents else "",
    )
    return " + ".join(part for part in parts if part) or "nothing"
