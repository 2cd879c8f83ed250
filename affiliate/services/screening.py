"""Gather the facts and bounded history fraud rules need for a conversion, and apply the verdict.

Every query here is bounded: an index range over a recent window, or a LIMIT, so screening
costs the same with a million clicks as with a thousand.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from affiliate.models import (
    Click,
    Conversion,
    ConversionStatus,
    ConversionType,
    FraudRule,
    User,
    UserSession,
)
from affiliate.services.fraud import (
    DEFAULT_RULES,
    Action,
    ConversionSignals,
    RuleSetting,
    Verdict,
    score_conversion,
    settings_for,
)
from affiliate.services.traffic import human_click

HISTORY_DAYS = 30
LOGINS_SEEN = 50  # the affiliate's latest logins whose IPs and devices count as theirs
RECENT_CONVERSIONS = 500  # the affiliate's latest conversions that measure click spamming
STATUS_FOR = {Action.REJECT: ConversionStatus.REJECTED, Action.FLAG: ConversionStatus.FLAGGED}


def program_rules(session: Session, program_id: int) -> dict[str, RuleSetting]:
    """A program's fraud rule settings over the defaults."""
    stored = {
        row.rule: RuleSetting(row.rule, Action(row.action), row.weight, json.loads(row.settings or "{}"))
        for row in session.scalars(select(FraudRule).where(FraudRule.program_id == program_id))
        if row.rule in DEFAULT_RULES
    }
    return settings_for(stored)


def screen(session: Session, conversion: Conversion, click: Click | None, *, now: datetime) -> Verdict | None:
    """Score an attributed conversion and set its score, reasons and status; unattributed ones are not scored."""
    if conversion.affiliate_id is None:
        return None
    rules = program_rules(session, conversion.program_id)
    verdict = score_conversion(_signals(session, conversion, click, rules, now), rules)
    conversion.fraud_score = verdict.score
    conversion.fraud_reasons = verdict.as_json() if verdict.fired else None
    conversion.status = STATUS_FOR.get(verdict.action, ConversionStatus.PENDING)
    return verdict


def _signals(
    session: Session, conversion: Conversion, click: Click | None, rules: dict[str, RuleSetting], now: datetime
) -> ConversionSignals:
    affiliate = session.get(User, conversion.affiliate_id)
    since = now - timedelta(days=HISTORY_DAYS)
    logins = session.execute(
        select(UserSession.ip, UserSession.fingerprint, UserSession.visitor_id)
        .where(UserSession.user_id == affiliate.id)
        .order_by(UserSession.created_at.desc())
        .limit(LOGINS_SEEN)
    ).all()
    late_after = timedelta(hours=rules["click_spamming"].get("late_hours"))
    recent = session.execute(
        select(Conversion.occurred_at, Click.clicked_at)
        .join(Click, Click.id == Conversion.click_id)
        .where(Conversion.affiliate_id == affiliate.id, Conversion.program_id == conversion.program_id,
               Conversion.type != ConversionType.REFUND, Conversion.id != conversion.id)
        .order_by(Conversion.occurred_at.desc())
        .limit(RECENT_CONVERSIONS)
    ).all()  # fmt: skip
    # Counting stops where the rate could no longer be an outlier: conversions / max_rate clicks.
    enough = int(len(recent) / rules["conversion_rate_outlier"].get("max_rate")) + 1
    clicks = session.scalar(
        select(func.count()).select_from(
            select(Click.id)
            .where(Click.affiliate_id == affiliate.id, Click.clicked_at >= since, human_click())
            .limit(enough)
            .subquery()
        )
    )
    return ConversionSignals(
        customer_email=conversion.customer_email,
        affiliate_email=affiliate.email,
        customer_ips=_present(conversion.customer_ip, click.ip if click else None),
        customer_devices=_present(conversion.customer_fingerprint, click.fingerprint if click else None),
        customer_visitors=_present(click.visitor_id if click else None),
        affiliate_ips=_present(*(ip for ip, _, _ in logins)),
        affiliate_devices=_present(*(device for _, device, _ in logins)),
        affiliate_visitors=_present(*(visitor for _, _, visitor in logins)),
        since_click=conversion.occurred_at - click.clicked_at if click else None,
        existing_customer=_converted_before(session, conversion),
        paid_click_params=tuple(filter(None, ((click.paid_click if click else None) or "").split(","))),
        click_country=click.country if click else None,
        conversion_country=conversion.customer_country,
        affiliate_conversions=len(recent),
        affiliate_late_conversions=sum(1 for occurred, clicked in recent if occurred - clicked > late_after),
        affiliate_clicks=clicks,
        same_device_conversions=_same_device(session, conversion, rules, now),
    )


def _present(*values: str | None) -> frozenset[str]:
    return frozenset(value for value in values if value)


def _converted_before(session: Session, conversion: Conversion) -> bool:
    customer = [
        condition
        for condition, value in (
            (Conversion.customer_external_id == conversion.customer_external_id, conversion.customer_external_id),
            (Conversion.customer_user_id == conversion.customer_user_id, conversion.customer_user_id),
        )
        if value
    ]
    if not customer:
        return False
    earlier = session.scalar(
        select(Conversion.id)
        .where(Conversion.program_id == conversion.program_id, Conversion.type != ConversionType.REFUND,
               Conversion.id != conversion.id, or_(*customer))
        .limit(1)
    )  # fmt: skip
    return earlier is not None


def _same_device(session: Session, conversion: Conversion, rules: dict[str, RuleSetting], now: datetime) -> int:
    """Other conversions in the rule's window from this conversion's IP or device, whoever was credited."""
    keys = [
        condition
        for condition, value in (
            (Conversion.customer_ip == conversion.customer_ip, conversion.customer_ip),
            (Conversion.customer_fingerprint == conversion.customer_fingerprint, conversion.customer_fingerprint),
        )
        if value
    ]
    if not keys:
        return 0
    since = now - timedelta(hours=rules["shared_device"].get("hours"))
    return session.scalar(
        select(func.count()).where(
            or_(*keys), Conversion.created_at >= since, Conversion.id != conversion.id,
            Conversion.type != ConversionType.REFUND,
        )
    )  # fmt: skip
