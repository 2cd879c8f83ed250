"""Record signups, sales and refunds once each, attributed to the click that earned them.

The natural key of a conversion is ``(program, order_id, type)``, unique in the database:
the same report again finds the stored row and gets the original answer, and the same key
with a different payload is refused. Attribution itself is the pure ``attribute``;
this module loads its inputs (the candidate clicks, an existing customer binding) and
stores its trace with the conversion. The caller commits.

Why one module: sales, signups and refunds share the idempotent store (natural key, request
hash, replay, conflict) and the statements built once below, so a refund is recorded as a sale is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from itertools import combinations

from sqlalchemy import Row, and_, bindparam, func, literal_column, or_, select, text, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, make_transient_to_detached

from affiliate.ids import issued_at
from affiliate.models import (
    Click,
    CodePrecedence,
    Conversion,
    ConversionStatus,
    ConversionType,
    Coupon,
    Enrollment,
    Program,
    ProgramStatus,
    User,
    UserStatus,
)
from affiliate.services import coupons, postbacks, webhooks
from affiliate.services import webhook_payloads as payloads
from affiliate.services.attribution import FIRST_CLICK, Binding, Code, ConversionFacts, Terms, Touch, attribute
from affiliate.services.commissions import add_months
from affiliate.services.enrollment import admits
from affiliate.services.plans import currency_now
from affiliate.services.screening import screen
from affiliate.services.standing import plan_in_force
from redirector.clickrecord import CLICK_PATIENCE_SECONDS, INGEST_LANES, INGEST_TURN_KEY

MAX_AMOUNT_CENTS = 10**11  # a billion in the major unit: far above any real order, far below overflow
CLOCK_SKEW = timedelta(seconds=300)  # a merchant's clock may run this far ahead of ours
# The redirector answers once a click is in its click log; its row reaches the database a moment later.
# How long a conversion naming a click issued moments ago waits for it: the redirector's bound on that moment.
CLICK_PATIENCE = timedelta(seconds=CLICK_PATIENCE_SECONDS)
# How old a click id a conversion names may be and still be waited for, past CLICK_PATIENCE: a click log holds a
# burst's clicks for minutes, but a redirector node that crashed holds its log until it is restarted, which an
# operator does within hours; late_clicks waits a day for a click, so an id issued within one is waited for.
CLICK_HORIZON = timedelta(hours=24)
CANDIDATES_PER_KEY = 50  # clicks loaded per visitor or device, newest first
OTHER_PARTNER = "Another partner's click."

# The statements of the conversion API are built once, here: building a select() and its cache
# key on every call cost far more CPU than running it. Values are bound at execution. Those that
# read columns run on the session's connection, so they do not autoflush; prepare_conversion's
# first query (_find, through the ORM) has already flushed whatever the caller added.
_clicks, _conversions, _users = Click.__table__, Conversion.__table__, User.__table__
_enrollments = Enrollment.__table__

_BY_KEY = select(Conversion).where(
    Conversion.program_id == bindparam("program_id"),
    Conversion.order_id == bindparam("order_id"),
    Conversion.type == bindparam("type"),
    Conversion.refund_key == bindparam("refund_key"),
)

# The touch's columns, and those screening reads from the winning click.
_CANDIDATE_COLUMNS = (
    _clicks.c.id,
    _clicks.c.click_id,
    _clicks.c.program_id,
    _clicks.c.affiliate_id,
    _clicks.c.link_id,
    _clicks.c.clicked_at,
    _clicks.c.visitor_id,
    _clicks.c.fingerprint,
    _clicks.c.is_bot,
    _clicks.c.fraud_action,
    _clicks.c.ip,
    _clicks.c.paid_click,
    _clicks.c.country,
    _users.c.status.label("affiliate_status"),
    _enrollments.c.status.label("enrollment_status"),
)
_CANDIDATE_KEYS = ("click_id", "visitor_id", "fingerprint")


def _enrolled(program_id, affiliate_id):
    """The enrollment row of a click's or conversion's affiliate in its program, if any: an affiliate removed from
    the program (or never admitted to one that needs it) earns nothing there from then on (enrollment.admits)."""
    return _enrollments, and_(_enrollments.c.program_id == program_id, _enrollments.c.affiliate_id == affiliate_id)


def _candidates_by(keys: tuple[str, ...], first_click: bool):
    """One statement for the clicks of every key a report gives, in the keys' order. Each key brings two sets:
    the clicks that can win (the program's, inside the window before the conversion, from the end its model
    prefers), and its newest clicks of any program or time, for the trace to show what lost and why. Only the
    newest would miss the winner behind a shopper's later clicks on other programs, or a first-click program's
    first click behind later ones."""
    qualifying_order = (_clicks.c.clicked_at.asc() if first_click else _clicks.c.clicked_at.desc(), _clicks.c.id)
    arms = []
    for arm, key in enumerate(keys):
        of_key = (
            select(*_CANDIDATE_COLUMNS, literal_column(str(arm)).label("arm"))
            .join(_users, _users.c.id == _clicks.c.affiliate_id)
            .outerjoin(*_enrolled(_clicks.c.program_id, _clicks.c.affiliate_id))
            .where(_clicks.c[key] == bindparam(key))
        )
        arms.append(
            of_key.where(
                _clicks.c.program_id == bindparam("candidate_program"),
                _clicks.c.clicked_at >= bindparam("window_start"),
                _clicks.c.clicked_at <= bindparam("window_end"),
            )
            .order_by(*qualifying_order)
            .limit(CANDIDATES_PER_KEY)
        )
        arms.append(of_key.order_by(_clicks.c.clicked_at.desc(), _clicks.c.id.desc()).limit(CANDIDATES_PER_KEY))
    lookups = union_all(*(select(arm.subquery()) for arm in arms)).subquery()
    return select(lookups).order_by(lookups.c.arm, lookups.c.clicked_at.desc(), lookups.c.id.desc())


# By which of the keys a report gives (a round trip each would cost more than the lookups) and the program's model.
_CANDIDATES = {
    (keys, first_click): _candidates_by(keys, first_click)
    for size in range(1, len(_CANDIDATE_KEYS) + 1)
    for keys in combinations(_CANDIDATE_KEYS, size)
    for first_click in (False, True)
}


def _first_conversion(*customer_keys: str):
    return (
        select(
            _conversions.c.affiliate_id,
            _conversions.c.click_id,
            _conversions.c.occurred_at,
            _users.c.status,
            _enrollments.c.status.label("enrollment_status"),
        )
        .join(_users, _users.c.id == _conversions.c.affiliate_id)
        .outerjoin(*_enrolled(_conversions.c.program_id, _conversions.c.affiliate_id))
        .where(
            _conversions.c.program_id == bindparam("program_id"),
            _conversions.c.type != ConversionType.REFUND,
            _conversions.c.status != ConversionStatus.REJECTED,
            or_(*(_conversions.c[key] == bindparam(key) for key in customer_keys)),
        )
        .order_by(_conversions.c.occurred_at, _conversions.c.id)
        .limit(1)
    )


# By which customer keys the report names: (external id given, user id given).
_FIRST_CONVERSION = {
    (True, False): _first_conversion("customer_external_id"),
    (False, True): _first_conversion("customer_user_id"),
    (True, True): _first_conversion("customer_external_id", "customer_user_id"),
}

# ON CONFLICT DO NOTHING answers a key stored meanwhile with no row instead of an error, so this
# insert needs no SAVEPOINT (SQLite >= 3.35 and PostgreSQL). Text, because the dialects'
# insert().on_conflict_do_nothing() cannot be cached and is compiled anew on every call. The
# names in the text are the model's own columns.
_CLICK_STORED = select(Click.id).where(Click.click_id == bindparam("click_id"))
_STORED_COLUMNS = [column for column in _conversions.columns if column.key != "id"]
_INSERT_NEW = text(
    f"INSERT INTO conversions ({', '.join(column.name for column in _STORED_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join(':' + column.key for column in _STORED_COLUMNS)}) ON CONFLICT DO NOTHING RETURNING id"
).bindparams(*(bindparam(column.key, type_=column.type) for column in _STORED_COLUMNS))


class ConversionError(Exception):
    """A conversion that cannot be recorded; ``code`` is stable, the message says why."""

    status = 422

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class OutOfRange(ConversionError):
    """A time outside what the API accepts (docs: README, "Back-dating")."""

    status = 400


class IdempotencyConflict(ConversionError):
    """The order was already reported with a different payload."""

    status = 409


@dataclass(frozen=True)
class ConversionRequest:
    """A signup or sale as a merchant (or the hosted signup page) reports it."""

    type: ConversionType
    order_id: str
    amount_cents: int
    currency: str
    customer_external_id: str | None = None
    customer_email: str | None = None
    click_id: str | None = None
    visitor_id: str | None = None
    fingerprint: str | None = None
    occurred_at: datetime | None = None
    metadata: dict = field(default_factory=dict)
    customer_user_id: int | None = None
    customer_ip: str | None = None  # where the customer converted from, when the merchant knows it
    customer_country: str | None = None
    coupon: str | None = None  # a coupon code the customer used at checkout
    referral_code: str | None = None  # a link's code ct.js carried from ?ref= or ?via= (through Stripe)


@dataclass(frozen=True)
class RefundRequest:
    """A full or partial refund of an earlier sale."""

    order_id: str
    refund_id: str | None = None
    amount_cents: int | None = None  # None refunds what is left of the sale
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class Recorded:
    conversion: Conversion
    created: bool  # False when this was a replay of a stored conversion


def request_hash(payload: dict) -> str:
    """A digest of what was reported, independent of key order and spacing."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def click_in_flight(session: Session, click_id: str | None, *, now: datetime) -> bool:
    """Whether ``click_id`` was issued moments ago and its row is not in the database yet."""
    issued = issued_at(click_id) if click_id else None
    if issued is None or not now - CLICK_PATIENCE * 2 <= issued <= now + timedelta(seconds=1):
        return False
    return session.scalar(_CLICK_STORED, {"click_id": click_id}) is None


def await_click(
    session: Session, click_id: str | None, *, clock: Callable[[], datetime], sleep: Callable[[float], None]
) -> None:
    """Give a click issued moments ago the second or so the redirector takes to store it, so a fast
    conversion is still attributed to it; a click id that is old, malformed or unknown waits not at all."""
    started = clock()
    while click_in_flight(session, click_id, now=clock()) and clock() - started < CLICK_PATIENCE:
        session.rollback()  # the next look starts a fresh read, which sees the ingester's commit
        sleep(0.1)


def record_conversion(
    session: Session, program: Program, report: ConversionRequest, *, now: datetime, quiet: bool = False
) -> Recorded:
    """Store a signup or sale once, attributed, and announce it; a replay returns the stored one.

    ``quiet``: the caller changes the new conversion further and announces it itself. A conversion waiting for
    its click is announced once attributed (services/late_clicks.py), never before.
    """
    prepared = prepare_conversion(session, program, report, now=now)
    if isinstance(prepared, Recorded):
        return prepared
    prepared = unless_arrived(session, prepared)
    recorded = _insert(session, prepared, prepared.request_hash)
    if recorded.created and not quiet and prepared.waiting_for_click is None:
        announce(session, recorded.conversion, now=now)
    return recorded


def announce(session: Session, conversion: Conversion, *, now: datetime) -> None:
    """Tell the program's webhook endpoints of a conversion just stored, and its affiliate's postbacks.

    A signup or sale is ``conversion.created``, followed by ``conversion.flagged`` or ``conversion.rejected``
    when screening decided so (and postbacks hear ``conversion.recorded``, its status in {status}); a refund is
    ``refund.created`` (postbacks hear of it when its reversal is worked out).
    """
    if conversion.type == ConversionType.REFUND:
        webhooks.emit(session, conversion.program_id, "refund.created", payloads.refund(conversion), now=now)
        return
    data = payloads.conversion(conversion)
    webhooks.emit(session, conversion.program_id, "conversion.created", data, now=now)
    screened = {ConversionStatus.FLAGGED: "conversion.flagged", ConversionStatus.REJECTED: "conversion.rejected"}
    if conversion.status in screened:
        webhooks.emit(session, conversion.program_id, screened[conversion.status], data, now=now)
    postbacks.emit(session, conversion, "conversion.recorded", now=now)


def store_conversion(session: Session, conversion: Conversion) -> Recorded:
    """Insert a prepared conversion and announce it, unless its key was stored meanwhile (then answer as a
    replay, or 409).

    A new conversion comes back detached, every column set as the row was stored: the API only
    answers with it. (record_conversion's callers change theirs further, so it goes through the ORM.)
    """
    conversion = unless_arrived(session, conversion)
    for column in _STORED_COLUMNS:
        # The defaults a flush would have filled in (a fraud score of 0 when not screened).
        if getattr(conversion, column.key) is None:
            default = column.default
            setattr(conversion, column.key, default.arg if default is not None and default.is_scalar else None)
    values = {column.key: getattr(conversion, column.key) for column in _STORED_COLUMNS}
    _check_currency_still(session, conversion)
    inserted = session.connection().scalar(_INSERT_NEW, values)
    if inserted is None:
        stored = _find(session, conversion.program_id, conversion.order_id, conversion.type)
        if stored is None:
            raise RuntimeError(f"Order {conversion.order_id} conflicts with a conversion that cannot be found.")
        return _replay(stored, conversion.request_hash)
    conversion.id = inserted
    make_transient_to_detached(conversion)
    if conversion.waiting_for_click is None:  # else announced once attributed
        announce(session, conversion, now=conversion.created_at)
    return Recorded(conversion, created=True)


def unless_arrived(session: Session, conversion: Conversion) -> Conversion:
    """A conversion prepared to wait for its click, attributed after all when the click is stored by now.

    The ingester looks up the conversions waiting for a batch's clicks before it commits them. A conversion
    prepared while the batch was on its way, and stored after that lookup, would be seen by neither: left to
    the money jobs' sweep. So this runs in the storing transaction, in the ingesters' turn: on PostgreSQL it
    takes every lane's advisory lock shared (waiting out a batch in progress, and holding the next one back
    until this transaction ends); on SQLite the transaction's BEGIN IMMEDIATE already keeps every ingester out.
    """
    if conversion.waiting_for_click is None:
        return conversion
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            "SELECT pg_advisory_xact_lock_shared(%s, lane) FROM generate_series(0, %s) AS lane",
            (INGEST_TURN_KEY, INGEST_LANES - 1),
        )
    if connection.scalar(_CLICK_STORED, {"click_id": conversion.waiting_for_click}) is None:
        return conversion
    program = session.get(Program, conversion.program_id)
    report = waiting_report(conversion)
    arrived = attribute_report(
        session, program, report, occurred_at=conversion.occurred_at, now=conversion.created_at, may_wait=False
    )
    arrived.request_hash = conversion.request_hash
    return arrived


def prepare_conversion(
    session: Session, program: Program, report: ConversionRequest, *, now: datetime
) -> Conversion | Recorded:
    """Everything but the insert: attribution and fraud screening, reading only.

    Returns the stored conversion (as a replay) if the key is already taken, else a new,
    unsaved conversion for ``store_conversion``; the two may run in separate transactions.
    A conversion naming a click still in a click log comes back waiting for it (see ``attribute_report``).
    """
    digest = request_hash(_payload(report))
    stored = _find(session, program.id, report.order_id, report.type)
    if stored is not None:
        return _replay(stored, digest)
    _check_report(program, report, now)
    conversion = attribute_report(session, program, report, occurred_at=report.occurred_at or now, now=now)
    conversion.request_hash = digest
    return conversion


def attribute_report(
    session: Session,
    program: Program,
    report: ConversionRequest,
    *,
    occurred_at: datetime,
    now: datetime,
    stored_id: int | None = None,
    may_wait: bool = True,
    paused: bool | None = None,
) -> Conversion:
    """A new, unsaved conversion for ``report``, attributed and screened as of ``now``.

    ``paused``: whether the program was paused when the conversion arrived (its status now when None); a
    conversion that waited for its click is judged as of its arrival.

    A report naming a click id issued within CLICK_HORIZON whose click is not stored (it is still in a
    redirector's click log) is not attributed yet: the conversion comes back credited to nobody, unscreened,
    and waiting for that click (``waiting_for_click``), unless ``may_wait`` is False (services/late_clicks.py
    attributes it again with ``stored_id``, the stored row's id, which screening leaves out of its counts).
    """
    facts = ConversionFacts(
        program_id=program.id,
        occurred_at=occurred_at,
        click_id=report.click_id,
        visitor_id=report.visitor_id,
        fingerprint=report.fingerprint,
    )
    candidates = _candidates(session, facts, program)
    touches = [_touch(row, program) for row in candidates.values()]
    named = next((touch for touch in touches if report.click_id and touch.click_id == report.click_id), None)
    if named is None and may_wait and click_awaitable(report.click_id, now=now):
        return _waiting(program, report, occurred_at, now)
    if stored_id is None and named is not None and named.program_id == program.id and occurred_at < named.clicked_at:
        raise OutOfRange("occurred_before_click", "occurred_at is before the click the conversion names.")
    binding = find_binding(session, program, report.customer_external_id, report.customer_user_id)
    terms = Terms(
        window=timedelta(days=program.attribution_window_days),
        model=program.attribution_model,
        code_wins=program.code_precedence == CodePrecedence.CODE,
        paused=program.status != ProgramStatus.ACTIVE if paused is None else paused,
    )
    code, coupon = _code(session, program, report)
    result = attribute(facts, touches, terms, binding, code)
    click = candidates[result.touch.id] if result.touch else None
    conversion = _reported(
        program,
        report,
        occurred_at,
        now,
        result.as_dict(),
        id=stored_id,
        customer_ip=report.customer_ip or (click.ip if click else None),
        customer_fingerprint=report.fingerprint or (click.fingerprint if click else None),
        click_id=click.id if click else None,
        affiliate_id=result.affiliate_id,
        coupon_id=coupon.id if coupon is not None and result.code_affiliate_clicked is not None else None,
        coupon_with_click=result.code_affiliate_clicked if coupon is not None else None,
    )
    screen(session, conversion, click, now=now)
    return conversion


def click_awaitable(click_id: str | None, *, now: datetime) -> bool:
    """Whether a conversion naming ``click_id`` may wait for it: an id of ours issued within CLICK_HORIZON."""
    issued = issued_at(click_id) if click_id else None
    return issued is not None and now - CLICK_HORIZON <= issued <= now + timedelta(seconds=1)


def _waiting(program: Program, report: ConversionRequest, occurred_at: datetime, now: datetime) -> Conversion:
    """A conversion stored before the click it names: credited to nobody until the click is stored."""
    summary = (
        f"Waiting for its click: the click it names ({report.click_id}) is still in a redirector's click log. "
        "It is attributed once the click is stored."
    )
    trace = {"affiliate_id": None, "touch_id": None, "matched_by": None, "summary": summary, "trace": []}
    # Attributed later, once its click is stored, as of now: whether the program is paused is kept for then.
    trace["program_paused"] = program.status != ProgramStatus.ACTIVE
    return _reported(
        program,
        report,
        occurred_at,
        now,
        trace,
        waiting_for_click=report.click_id,
        waiting_since=now,
        waiting_report=json.dumps(asdict(report), default=str),
    )


def _reported(
    program: Program, report: ConversionRequest, occurred_at: datetime, now: datetime, trace: dict, **decided
) -> Conversion:
    """A pending conversion holding what the merchant reported; ``decided`` adds what attribution worked out."""
    fields = {
        "program_id": program.id,
        "type": report.type,
        "order_id": report.order_id,
        "amount_cents": report.amount_cents,
        "currency": report.currency,
        "customer_external_id": report.customer_external_id,
        "customer_email": report.customer_email,
        "customer_user_id": report.customer_user_id,
        "customer_ip": report.customer_ip,
        "customer_fingerprint": report.fingerprint,
        "customer_country": report.customer_country,
        "occurred_at": occurred_at,
        "created_at": now,
        "decision_trace": json.dumps(trace),
        "status": ConversionStatus.PENDING,
        "extra": json.dumps(report.metadata) if report.metadata else None,
    }
    return Conversion(**(fields | decided))


def waiting_report(conversion: Conversion) -> ConversionRequest:
    """The report a waiting conversion was stored from, to attribute again."""
    data = json.loads(conversion.waiting_report)
    return ConversionRequest(**data | {"type": ConversionType(data["type"]), "occurred_at": conversion.occurred_at})


def _code(session: Session, program: Program, report: ConversionRequest) -> tuple[Code | None, Coupon | None]:
    """The coupon the report names (over a referral code: the customer typed it), as attribution needs it."""
    if report.coupon:
        return coupons.coupon_code(session, program.id, report.coupon)
    if report.referral_code:
        return coupons.referral_code(session, program.id, report.referral_code), None
    return None, None


def record_refund(session: Session, program: Program, report: RefundRequest, *, now: datetime) -> Recorded:
    """Store a refund of a stored sale once, and announce it; refunds never add up to more than the sale.

    A refund's key is (the refunded order, the merchant's refund id), "" when it names none: refund ids
    and order ids are separate namespaces. The sale's row is locked while what is left is read, so
    concurrent refunds are accepted one after the other.
    """
    refund_key = report.refund_id or ""
    digest = request_hash(asdict(report))
    stored = _find(session, program.id, report.order_id, ConversionType.REFUND, refund_key)
    if stored is not None:
        return _replay(stored, digest)
    sale = session.scalar(
        _BY_KEY.with_for_update(key_share=True), _key(program.id, report.order_id, ConversionType.SALE)
    )
    if sale is None:
        raise ConversionError("unknown_order", "No sale with this order_id was reported for this program.")
    # A concurrent refund with the same key may have been stored while we waited for the lock.
    stored = _find(session, program.id, report.order_id, ConversionType.REFUND, refund_key)
    if stored is not None:
        return _replay(stored, digest)
    # SUM of a BIGINT is NUMERIC on PostgreSQL: back to integer cents.
    refunded = int(
        session.scalar(
            select(func.coalesce(func.sum(Conversion.amount_cents), 0)).where(Conversion.refund_of_id == sale.id)
        )
    )
    left = sale.amount_cents - refunded
    amount = left if report.amount_cents is None else report.amount_cents
    if amount <= 0 or amount > left:
        message = f"This refund would exceed the sale: {left} of {sale.amount_cents} is left to refund."
        raise ConversionError("refund_exceeds_sale", message)
    occurred_at = report.occurred_at or now
    if occurred_at > now + CLOCK_SKEW:
        raise OutOfRange("occurred_in_future", "occurred_at is in the future.")
    if occurred_at < sale.occurred_at:
        raise OutOfRange("refund_before_sale", "occurred_at is before the sale it refunds.")
    refund = Conversion(
        program_id=program.id,
        type=ConversionType.REFUND,
        order_id=report.order_id,
        refund_key=refund_key,
        amount_cents=amount,
        currency=sale.currency,
        customer_external_id=sale.customer_external_id,
        customer_email=sale.customer_email,
        customer_user_id=sale.customer_user_id,
        click_id=sale.click_id,
        affiliate_id=sale.affiliate_id,
        refund_of_id=sale.id,
        occurred_at=occurred_at,
        created_at=now,
        request_hash=digest,
        decision_trace=json.dumps(
            {
                "affiliate_id": sale.affiliate_id,
                "matched_by": attribution_of(sale).get("matched_by"),
                "summary": f"A refund of sale {sale.order_id}: it follows the sale's attribution.",
                "trace": [],
            }
        ),
        status=ConversionStatus.APPROVED,
    )
    recorded = _insert(session, refund, digest)
    if recorded.created and sale.waiting_for_click is None:  # else with the sale, once it is attributed
        announce(session, refund, now=now)
    return recorded


def _candidates(session: Session, facts: ConversionFacts, program: Program) -> dict[int, Row]:
    """The clicks that could have led to this conversion (by click id, visitor and device), by id, as rows of
    the touch's columns and those screening reads.

    Clicks of every program are loaded so that the trace can say a click lost for being on
    another program; each key brings at most CANDIDATES_PER_KEY of the clicks that can win and as many of its
    newest (``_candidates_by``).
    """
    given = {key: getattr(facts, key) for key in _CANDIDATE_KEYS if getattr(facts, key)}
    if not given:
        return {}
    # A second either side of the window: attribute() applies it to the second; these only bound the lookup.
    window = timedelta(days=program.attribution_window_days, seconds=1)
    values = given | {
        "candidate_program": program.id,
        "window_start": facts.occurred_at - window,
        "window_end": facts.occurred_at + timedelta(seconds=1),
    }
    statement = _CANDIDATES[tuple(given), program.attribution_model == FIRST_CLICK]
    found: dict[int, Row] = {}
    for row in session.connection().execute(statement, values):
        found.setdefault(row.id, row)
    return found


def find_binding(
    session: Session, program: Program, customer_external_id: str | None, customer_user_id: int | None
) -> Binding | None:
    """The affiliate a returning customer is bound to: the one credited with their first conversion."""
    if not customer_external_id and not customer_user_id:
        return None
    statement = _FIRST_CONVERSION[bool(customer_external_id), bool(customer_user_id)]
    first = (
        session.connection()
        .execute(
            statement,
            {
                "program_id": program.id,
                "customer_external_id": customer_external_id,
                "customer_user_id": customer_user_id,
            },
        )
        .first()
    )
    if first is None:
        return None
    return Binding(
        affiliate_id=first.affiliate_id,
        touch_id=first.click_id,
        bound_at=first.occurred_at,
        until=_recurring_until(session, program, first.affiliate_id, first.occurred_at),
        affiliate_active=first.status == UserStatus.ACTIVE and admits(program.enrollment, first.enrollment_status),
    )


def _recurring_until(session: Session, program: Program, affiliate_id: int, since: datetime) -> datetime | None:
    """How long a customer stays bound: the recurring period (None: for life) of the plan that pays the affiliate
    they are bound to (their own, else their group's, else the program's), as it stood at the first sale.

    A plan without recurring commissions still binds for one attribution window, so a
    customer who buys again soon is not taken by whoever's link they clicked last.
    """
    plan = plan_in_force(session, program.id, affiliate_id, since)
    if plan is None or plan.recurring_months == 0:
        return since + timedelta(days=program.attribution_window_days)
    if plan.recurring_months is None:
        return None
    return add_months(since, plan.recurring_months)


def attribution_of(conversion: Conversion) -> dict:
    """The stored decision trace."""
    return json.loads(conversion.decision_trace) if conversion.decision_trace else {}


def _touch(click: Row, program: Program) -> Touch:
    return Touch(
        id=click.id,
        click_id=click.click_id,
        program_id=click.program_id,
        affiliate_id=click.affiliate_id,
        link_id=click.link_id,
        clicked_at=click.clicked_at,
        visitor_id=click.visitor_id,
        fingerprint=click.fingerprint,
        is_bot=click.is_bot,
        fraud_action=click.fraud_action,
        # Another program's click is ruled out as such before this matters.
        affiliate_active=click.affiliate_status == UserStatus.ACTIVE
        and admits(program.enrollment, click.enrollment_status),
    )


def _check_report(program: Program, report: ConversionRequest, now: datetime) -> None:
    if report.currency != program.currency:
        raise ConversionError(
            "currency_mismatch", f"This program is in {program.currency}; the conversion is in {report.currency}."
        )
    if not 0 <= report.amount_cents <= MAX_AMOUNT_CENTS:
        raise ConversionError("amount_out_of_range", f"amount must be between 0 and {MAX_AMOUNT_CENTS}.")
    if report.type == ConversionType.SALE and report.amount_cents == 0:
        raise ConversionError("amount_out_of_range", "A sale needs an amount above zero.")
    if report.occurred_at is not None and report.occurred_at > now + CLOCK_SKEW:
        raise OutOfRange("occurred_in_future", "occurred_at is in the future.")
    earliest = now - timedelta(days=program.attribution_window_days)
    if report.occurred_at is not None and report.occurred_at < earliest:
        raise OutOfRange(
            "occurred_too_early",
            f"occurred_at is more than the program's attribution window ({program.attribution_window_days} days) ago.",
        )


def _check_currency_still(session: Session, conversion: Conversion) -> None:
    """Checked again in the storing transaction: the report was checked against the program as read before it,
    and a program with no money recorded yet may have changed its currency since. On PostgreSQL the key-share
    lock waits for a currency change in progress (it holds the program FOR UPDATE) and then reads what it set;
    on SQLite this transaction already holds the only write lock."""
    currency = currency_now(session, conversion.program_id)
    if currency != conversion.currency and conversion.type == ConversionType.SIGNUP and not conversion.amount_cents:
        conversion.currency = currency  # a signup carries no money: it is in whatever the program is in now
    elif currency != conversion.currency:
        raise ConversionError(
            "currency_mismatch", f"This program is in {currency}; the conversion is in {conversion.currency}."
        )


def _payload(report: ConversionRequest) -> dict:
    payload = asdict(report)
    payload.pop("fingerprint")  # derived from the request, not part of what was reported
    for key in ("coupon", "referral_code"):  # absent, they leave the digest of earlier reports as it was
        if payload[key] is None:
            del payload[key]
    return payload


def _key(program_id: int, order_id: str, kind: str, refund_key: str = "") -> dict:
    return {"program_id": program_id, "order_id": order_id, "type": kind, "refund_key": refund_key}


def _find(session: Session, program_id: int, order_id: str, kind: str, refund_key: str = "") -> Conversion | None:
    return session.scalar(_BY_KEY, _key(program_id, order_id, kind, refund_key))


def _replay(stored: Conversion, digest: str) -> Recorded:
    if stored.request_hash != digest:
        raise IdempotencyConflict(
            "idempotency_conflict",
            f"Order {stored.order_id} was already reported as a {stored.type} with a different payload.",
        )
    return Recorded(stored, created=False)


def _insert(session: Session, conversion: Conversion, digest: str) -> Recorded:
    """Insert, or, when a concurrent request stored the same key first, answer as a replay."""
    _check_currency_still(session, conversion)
    try:
        with session.begin_nested():
            session.add(conversion)
    except IntegrityError:
        key = conversion.refund_key or ""
        stored = _find(session, conversion.program_id, conversion.order_id, conversion.type, key)
        if stored is None:
            raise
        return _replay(stored, digest)
    return Recorded(conversion, created=True)


def trace_for_affiliate(trace: dict, affiliate_id: int) -> dict:
    """A stored trace as the credited affiliate may see it: other partners' clicks reduced to their outcome."""
    lines = []
    for line in trace.get("trace", []):
        if line.get("affiliate_id") == affiliate_id:
            lines.append(line)
        else:
            lines.append({"outcome": line.get("outcome"), "reason": line.get("reason"), "detail": OTHER_PARTNER})
    return {key: value for key, value in trace.items() if key != "trace"} | {"trace": lines}
