"""Gather the facts and bounded history fraud rules need for a conversion, and apply the verdict.

Every query here is bounded: an index range over a recent window, or a LIMIT, so screening
costs the same with a million clicks as with a thousand.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import Boolean, Float, Row, Select, bindparam, case, func, literal, null, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from affiliate.models import (
    Click,
    Conversion,
    ConversionStatus,
    ConversionType,
    Coupon,
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

# Built once, as in services.conversions: constructing a statement per call costs more than running it.
# They run on the connection and do not autoflush (program_rules, used on its own, runs _RULES in the session).
_clicks, _conversions = Click.__table__, Conversion.__table__

_RULES = select(FraudRule.rule, FraudRule.action, FraudRule.weight, FraudRule.settings).where(
    FraudRule.program_id == bindparam("program_id")
)
_AFFILIATE_EMAIL = select(User.email).where(User.id == bindparam("affiliate_id"))
_LOGINS = (
    select(UserSession.ip, UserSession.fingerprint, UserSession.visitor_id)
    .where(UserSession.user_id == bindparam("affiliate_id"))
    .order_by(UserSession.created_at.desc())
    .limit(LOGINS_SEEN)
)
# IS DISTINCT FROM: a conversion not yet stored (no id) excludes nothing.
_OTHER_CONVERSION = _conversions.c.id.is_distinct_from(bindparam("conversion_id"))


class _LaterThan(FunctionElement):
    """SQL for ``later - earlier > seconds`` on two UTC time columns, exact to the microsecond.

    ``seconds`` must be whole (late_hours is a whole number of hours). PostgreSQL adds an
    interval of seconds (no days, so no daylight saving). SQLite stores times as
    'YYYY-MM-DD HH:MM:SS.ffffff' text: datetime() moves the whole seconds, the fraction is
    carried over, and the texts compare in time order.
    """

    type = Boolean()
    inherit_cache = True


@compiles(_LaterThan, "sqlite")
def _later_than_sqlite(element, compiler, **kw) -> str:
    later, earlier, seconds = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"{later} > datetime(substr({earlier}, 1, 19), '+' || {seconds} || ' seconds') || substr({earlier}, 20)"


@compiles(_LaterThan, "postgresql")
def _later_than_postgresql(element, compiler, **kw) -> str:
    later, earlier, seconds = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"{later} > {earlier} + make_interval(secs => {seconds})"


# The affiliate's latest conversions, counted in the database rather than loaded (up to 500 rows).
_latest = (
    select(_conversions.c.occurred_at, _clicks.c.clicked_at)
    .join(_clicks, _clicks.c.id == _conversions.c.click_id)
    .where(
        _conversions.c.affiliate_id == bindparam("affiliate_id"),
        _conversions.c.program_id == bindparam("program_id"),
        _conversions.c.type != ConversionType.REFUND,
        _OTHER_CONVERSION,
    )
    .order_by(_conversions.c.occurred_at.desc())
    .limit(RECENT_CONVERSIONS)
    .subquery()
)
_late = _LaterThan(_latest.c.occurred_at, _latest.c.clicked_at, bindparam("late_seconds", type_=Float()))
_RECENT = (
    select(func.count().label("conversions"), func.coalesce(func.sum(case((_late, 1), else_=0)), 0).label("late"))
    .select_from(_latest)
    .subquery()
)
_HUMAN_CLICKS = select(func.count()).select_from(
    select(_clicks.c.id)
    .where(
        _clicks.c.affiliate_id == bindparam("affiliate_id"), _clicks.c.clicked_at >= bindparam("since"), human_click()
    )
    .limit(bindparam("enough"))
    .subquery()
)


def _per_key_set(build, first: str, second: str) -> dict[tuple[str, ...], Select]:
    """One statement per non-empty set of two customer keys, matching a conversion on any of them."""
    return {
        keys: build(or_(*(_conversions.c[key] == bindparam(key) for key in keys)))
        for keys in ((first,), (second,), (first, second))
    }


_EARLIER_CUSTOMER_CONVERSION = _per_key_set(
    lambda customer: (
        select(_conversions.c.id)
        .where(
            _conversions.c.program_id == bindparam("program_id"),
            _conversions.c.type != ConversionType.REFUND,
            _OTHER_CONVERSION,
            customer,
        )
        .limit(1)
    ),
    "customer_external_id",
    "customer_user_id",
)
_SAME_DEVICE_CONVERSIONS = _per_key_set(
    lambda device: (
        select(func.count())
        .select_from(_conversions)
        .where(
            device,
            _conversions.c.created_at >= bindparam("device_since"),
            _OTHER_CONVERSION,
            _conversions.c.type != ConversionType.REFUND,
        )
    ),
    "customer_ip",
    "customer_fingerprint",
)


@cache
def _history(customer: tuple[str, ...], device: tuple[str, ...]) -> Select:
    """One statement for the history screening reads about the affiliate and the customer: the affiliate's
    email, its latest conversions and how many came long after their click, whether the customer converted
    before, and the recent conversions from the customer's IP or device (a round trip each cost more than
    the queries). ``customer`` and ``device``: the keys the conversion has a value for."""
    earlier = (_EARLIER_CUSTOMER_CONVERSION[customer].scalar_subquery() if customer else null()).label(
        "earlier_conversion"
    )
    same_device = (_SAME_DEVICE_CONVERSIONS[device].scalar_subquery() if device else literal(0)).label("same_device")
    return select(
        _RECENT.c.conversions, _RECENT.c.late, _AFFILIATE_EMAIL.scalar_subquery().label("email"), earlier, same_device
    )


# The conversion being screened is not stored yet: it is counted by the caller.
_COUPON_USE = select(
    func.count(), func.coalesce(func.sum(case((_conversions.c.coupon_with_click.is_(False), 1), else_=0)), 0)
).where(
    _conversions.c.coupon_id == bindparam("coupon_id"),
    _conversions.c.occurred_at >= bindparam("since"),
    _conversions.c.type != ConversionType.REFUND,
    _OTHER_CONVERSION,
)


def _coupon_code(session: Session, coupon_id: int) -> str | None:
    return session.connection().scalar(select(Coupon.code).where(Coupon.id == coupon_id))


def program_rules(session: Session, program_id: int) -> dict[str, RuleSetting]:
    """A program's fraud rule settings over the defaults."""
    return _settings(session.execute(_RULES, {"program_id": program_id}))


def _settings(rows) -> dict[str, RuleSetting]:
    stored = {
        row.rule: RuleSetting(row.rule, Action(row.action), row.weight, json.loads(row.settings or "{}"))
        for row in rows
        if row.rule in DEFAULT_RULES
    }
    return settings_for(stored)


def screen(session: Session, conversion: Conversion, click: Click | Row | None, *, now: datetime) -> Verdict | None:
    """Score an attributed conversion and set its score, reasons and status; unattributed ones are not scored."""
    # ``click`` may be a row: of the winning click, screening reads clicked_at, ip, fingerprint,
    # visitor_id, paid_click and country.
    if conversion.affiliate_id is None:
        return None
    # On the connection: the ORM's own path costs more than the query, and prepare_conversion has flushed.
    rules = _settings(session.connection().execute(_RULES, {"program_id": conversion.program_id}))
    verdict = score_conversion(_signals(session, conversion, click, rules, now), rules)
    conversion.fraud_score = verdict.score
    conversion.fraud_reasons = verdict.as_json() if verdict.fired else None
    conversion.status = STATUS_FOR.get(verdict.action, ConversionStatus.PENDING)
    return verdict


def _signals(
    session: Session, conversion: Conversion, click: Click | Row | None, rules: dict[str, RuleSetting], now: datetime
) -> ConversionSignals:
    connection = session.connection()
    of_affiliate = {"affiliate_id": conversion.affiliate_id}
    logins = connection.execute(_LOGINS, of_affiliate).all()
    customer = _customer_keys(conversion, "customer_external_id", "customer_user_id")
    device = _customer_keys(conversion, "customer_ip", "customer_fingerprint")
    history = connection.execute(
        _history(tuple(customer), tuple(device)),
        {
            **of_affiliate,
            **customer,
            **device,
            "program_id": conversion.program_id,
            "conversion_id": conversion.id,
            "late_seconds": timedelta(hours=rules["click_spamming"].get("late_hours")).total_seconds(),
            "device_since": now - timedelta(hours=rules["shared_device"].get("hours")),
        },
    ).one()
    # Counting stops where the rate could no longer be an outlier: conversions / max_rate clicks.
    enough = int(history.conversions / rules["conversion_rate_outlier"].get("max_rate")) + 1
    since = now - timedelta(days=HISTORY_DAYS)
    clicks = connection.scalar(_HUMAN_CLICKS, {**of_affiliate, "since": since, "enough": enough})
    return ConversionSignals(
        customer_email=conversion.customer_email,
        affiliate_email=history.email,
        customer_ips=_present(conversion.customer_ip, click.ip if click else None),
        customer_devices=_present(conversion.customer_fingerprint, click.fingerprint if click else None),
        customer_visitors=_present(click.visitor_id if click else None),
        affiliate_ips=_present(*(ip for ip, _, _ in logins)),
        affiliate_devices=_present(*(device for _, device, _ in logins)),
        affiliate_visitors=_present(*(visitor for _, _, visitor in logins)),
        since_click=conversion.occurred_at - click.clicked_at if click else None,
        existing_customer=history.earlier_conversion is not None,
        paid_click_params=tuple(filter(None, ((click.paid_click if click else None) or "").split(","))),
        click_country=click.country if click else None,
        conversion_country=conversion.customer_country,
        affiliate_conversions=history.conversions,
        affiliate_late_conversions=history.late,
        affiliate_clicks=clicks,
        same_device_conversions=history.same_device,
        **_coupon_use(session, conversion, rules, now),
    )


def _present(*values: str | None) -> frozenset[str]:
    return frozenset(value for value in values if value)


def _customer_keys(conversion: Conversion, *keys: str) -> dict[str, object]:
    """Those of the conversion's customer keys it has a value for."""
    return {key: getattr(conversion, key) for key in keys if getattr(conversion, key)}


def _coupon_use(session: Session, conversion: Conversion, rules: dict[str, RuleSetting], now: datetime) -> dict:
    """The coupon's conversions in the rule's period, this one included, and how many came without a click of
    its affiliate."""
    if conversion.coupon_id is None or rules["coupon_leak"].action == Action.OFF:
        return {}
    since = now - timedelta(days=rules["coupon_leak"].get("days"))
    total, without = (
        session.connection()
        .execute(_COUPON_USE, {"coupon_id": conversion.coupon_id, "since": since, "conversion_id": conversion.id})
        .one()
    )
    mine = 0 if conversion.coupon_with_click else 1
    return {
        "coupon_code": _coupon_code(session, conversion.coupon_id),
        "coupon_conversions": total + 1,
        "coupon_without_click": without + mine,
    }
