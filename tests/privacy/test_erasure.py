"""Erasure: every copy of a person's data pseudonymised, by the CLI or an admin, with money and reports unchanged."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, text

from affiliate.extensions import db
from affiliate.jobs import accrue_all
from affiliate.models import AuditLog, Click, Conversion, ConversionType, FraudRule, Program, User, utcnow
from affiliate.services import accrual
from affiliate.services.conversions import ConversionRequest, RefundRequest, record_conversion, record_refund
from affiliate.services.fraud import DEFAULT_RULES
from tests.api.helpers import click
from tests.factories import Auth, Visitor, csrf_token, make_admin, make_affiliate, make_finance, make_link, make_program
from tests.money.test_accrual import set_plan
from tests.reports.helpers import stored_rollups
from tests.reports.test_pages import figures

PASSWORD = "a long enough password"
FRAN_IP = "203.0.113.9"
FRAN_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0 FranBook"
OTHER_IP = "198.51.100.77"


@dataclass
class World:
    admin: object
    bob: object
    program_id: int
    visitor_id: str
    click_ids: list[str]
    fingerprint: str
    member_id: int
    other_click: str


def _personal(world: World) -> list[str]:
    """Fran's personal values, each of which must be gone from every table after erasure."""
    return [
        "fran@example.com",
        "Fran Friend",
        "cus_fran_42",
        "+44 7700 900123",
        world.visitor_id,
        world.fingerprint,
        FRAN_IP,
        FRAN_AGENT,
        "mail.example.net/inbox/fran",
    ]


@pytest.fixture
def world(app, redirector) -> World:
    """Fran clicks Bob's link twice, signs up as a member and buys; she is refunded in part; someone else buys too."""
    admin = make_admin(app)
    program = make_program(app, admin, hold_days=0)
    set_plan(app, program.id, percent_bps=1_000)
    with app.app_context():
        # Nobody signs in from Fran's address here; the sale seconds after her click must not wait for review.
        db.session.add_all(
            FraudRule(program_id=program.id, rule=name, action="off", weight=0, settings="{}") for name in DEFAULT_RULES
        )
        db.session.commit()
    bob = make_affiliate(app, name="Bob")
    link = make_link(app, bob, program)
    fran = Visitor(redirector, ip=FRAN_IP)
    referrer = {"Referer": "https://mail.example.net/inbox/fran?id=7"}
    fran_clicks = [
        parse_qs(
            urlsplit(
                fran.get(f"/r/{link.code}", headers={"User-Agent": FRAN_AGENT, **headers}).headers["Location"]
            ).query
        )["ct_click"][0]
        for headers in ({}, referrer)
    ]
    other_click = click(Visitor(redirector, ip=OTHER_IP), link.code)
    assert redirector.recorder.flush()

    assert _fran_signs_up(app, f"?program={program.id}&ct_click={fran_clicks[0]}").status_code == 302
    with app.app_context():
        stored = db.session.get(Program, program.id)
        visitor_id, fingerprint = db.session.execute(
            select(Click.visitor_id, Click.fingerprint).where(Click.click_id == fran_clicks[1])
        ).one()
        member_id = db.session.scalar(select(User.id).where(User.email == "fran@example.com"))
        sale = ConversionRequest(
            type=ConversionType.SALE,
            order_id="FRAN-1",
            amount_cents=10_000,
            currency="USD",
            customer_email="Fran@Example.com",
            customer_external_id="cus_fran_42",
            click_id=fran_clicks[1],
            customer_ip=FRAN_IP,
            metadata={"phone": "+44 7700 900123"},
        )
        assert record_conversion(db.session, stored, sale, now=utcnow()).conversion.affiliate_id == bob.id
        other = ConversionRequest(
            type=ConversionType.SALE,
            order_id="OTHER-1",
            amount_cents=5_000,
            currency="USD",
            customer_email="olga@example.org",
            customer_external_id="cus_olga",
            click_id=other_click,
            customer_ip=OTHER_IP,
        )
        record_conversion(db.session, stored, other, now=utcnow())
        db.session.commit()
        accrue_all()
        accrual.approve_due(db.session, now=utcnow())
        db.session.commit()
        record_refund(
            db.session, stored, RefundRequest(order_id="FRAN-1", refund_id="R1", amount_cents=2_500), now=utcnow()
        )
        db.session.commit()
        accrue_all()
    return World(admin, bob, program.id, visitor_id, fran_clicks, fingerprint, member_id, other_click)


def _fran_signs_up(app, query: str):
    """The shopper signs up on the hosted page as a member (the query carries the program and her click)."""
    portal = app.test_client()
    page = portal.get(f"/signup{query}")
    return portal.post(
        f"/signup{query}",
        data={
            "name": "Fran Friend",
            "email": "fran@example.com",
            "password": PASSWORD,
            "csrf_token": csrf_token(page.get_data(as_text=True)),
        },
    )


def _dump(app, skip: tuple[str, ...] = ()) -> dict[str, list]:
    """Every row of every table."""
    with app.app_context():
        return {
            table: db.session.execute(text(f"SELECT * FROM {table} ORDER BY 1")).all()
            for table in sorted(db.metadata.tables)
            if table not in skip
        }


def _money(app) -> dict[str, list]:
    """What money and reports are made of: amounts, statuses and links between them, and every rollup."""
    with app.app_context():
        return {
            table: db.session.execute(text(f"SELECT {columns} FROM {table} ORDER BY 1, 2")).all()
            for table, columns in {
                "conversions": "id, program_id, type, order_id, amount_cents, currency, affiliate_id, click_id, "
                "refund_of_id, status, fraud_score",
                "commissions": "*",
                "ledger_transactions": "*",
                "ledger_entries": "*",
                "payouts": "*",
                "referrals": "*",
                "click_rollups": "*",
                "conversion_rollups": "*",
                "commission_rollups": "*",
            }.items()
        }


def _report(app, user) -> dict[str, str]:
    client = app.test_client()
    Auth(client).login(user.email)
    return figures(client.get("/partner/reports/").get_data(as_text=True))


def _holding(rows: dict[str, list], values: list[str]) -> dict[str, set[str]]:
    """For each personal value, the tables that still hold it (in any column, any case)."""
    found: dict[str, set[str]] = {}
    for table, table_rows in rows.items():
        # Each value whole: a row's repr cuts long text short, and a value in a long column would go unseen.
        blob = "\n".join(str(value) for row in table_rows for value in row).lower()
        for value in values:
            if value.lower() in blob:
                found.setdefault(value, set()).add(table)
    return found


def test_erase_person_pseudonymises_every_copy_and_keeps_money_and_reports(app, runner, world, redirector):
    personal = _personal(world)
    before_dump = _dump(app)
    assert set(_holding(before_dump, personal)) == set(personal), "the scenario stores every value it checks"
    money, rollups, report = _money(app), stored_rollups(app), _report(app, world.bob)
    assert report["sales"] == "1" or report["sales"] == "2"

    result = runner.invoke(args=["erase-person", "--email", " FRAN@example.com ", "--yes"])
    assert result.exit_code == 0, result.output
    assert "Found 2 clicks, 3 conversions and 1 member accounts" in result.output
    after = _dump(app)
    assert _holding(after, personal) == {}, "no table keeps a personal value"
    # Someone else's data is untouched.
    assert _holding(after, ["olga@example.org", "cus_olga", OTHER_IP]) == _holding(
        before_dump, ["olga@example.org", "cus_olga", OTHER_IP]
    )
    assert _money(app) == money and stored_rollups(app) == rollups

    # Asking again, by any identifier, changes nothing.
    again = runner.invoke(args=["erase-person", "--email", "fran@example.com", "--yes"])
    assert again.exit_code == 0 and "Found 0 clicks, 0 conversions and 0 member accounts" in again.output
    by_click = runner.invoke(args=["erase-person", "--click-id", world.click_ids[0], "--yes"])
    assert by_click.exit_code == 0 and "Pseudonymised 0 clicks, 0 conversions, 0 member accounts" in by_click.output
    assert _dump(app, skip=("audit_log",)) == {k: v for k, v in after.items() if k != "audit_log"}

    assert _report(app, world.bob) == report
    for command in (["ledger-check"], ["rollup", "--check"]):
        checked = runner.invoke(args=command)
        assert checked.exit_code == 0, checked.output
    # The click log holds no copy either: stored segments are zeroed.
    log_dir = Path(app.config["CLICK_LOG_DIR"])
    for path in log_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert FRAN_IP.encode() not in data and world.visitor_id.encode() not in data, path
    # Fran's account can no longer sign in.
    assert Auth(app.test_client()).login("fran@example.com", PASSWORD).status_code != 302
    with app.app_context():
        member = db.session.get(User, world.member_id)
        assert member.name == "Erased member" and member.email.endswith("@erased.invalid")
        actions = [a.action for a in db.session.scalars(select(AuditLog).order_by(AuditLog.id))]
        assert actions.count("conversion.erase") == 3 and actions.count("person.erase") == 3
        assert "user.erase" in actions


@pytest.mark.parametrize("kind", ["customer-id", "visitor-id", "click-id"])
def test_each_identifier_finds_the_same_person(app, runner, world, kind):
    value = {"customer-id": "cus_fran_42", "visitor-id": world.visitor_id, "click-id": world.click_ids[1]}[kind]
    result = runner.invoke(args=["erase-person", f"--{kind}", value, "--yes"])
    assert result.exit_code == 0, result.output
    assert "Found 2 clicks, 3 conversions and 1 member accounts" in result.output
    assert _holding(_dump(app), _personal(world)) == {}


def test_erase_person_refuses_unclear_requests(app, runner, world):
    before = _dump(app)
    for args in (
        [],
        ["--email", "fran@example.com", "--customer-id", "cus_fran_42"],
        ["--email", "not-an-email"],
        ["--visitor-id", "   "],
    ):
        result = runner.invoke(args=["erase-person", *args, "--yes"])
        assert result.exit_code == 2, (args, result.output)
    declined = runner.invoke(args=["erase-person", "--email", "fran@example.com"], input="n\n")
    assert declined.exit_code != 0
    assert _dump(app) == before


def test_admin_erases_a_person_after_confirming(app, world):
    client = app.test_client()
    Auth(client).login(world.admin.email)
    page = client.get("/admin/erase-person")
    assert page.status_code == 200
    token = csrf_token(page.get_data(as_text=True))
    before = _dump(app)

    found = client.post("/admin/erase-person", data={"kind": "email", "value": "fran@example.com", "csrf_token": token})
    body = found.get_data(as_text=True)
    assert found.status_code == 200 and 'id="found-conversions">3<' in body and 'id="found-clicks">2<' in body
    unconfirmed = client.post(
        "/admin/erase-person", data={"kind": "email", "value": "fran@example.com", "step": "erase", "csrf_token": token}
    )
    assert unconfirmed.status_code == 400 and "Tick the box" in unconfirmed.get_data(as_text=True)
    forged = client.post(
        "/admin/erase-person", data={"kind": "email", "value": "fran@example.com", "step": "erase", "confirm": "y"}
    )
    assert forged.status_code == 400
    assert _dump(app) == before, "nothing changes until the admin confirms"

    done = client.post(
        "/admin/erase-person",
        data={"kind": "email", "value": "fran@example.com", "step": "erase", "confirm": "y", "csrf_token": token},
    )
    assert done.status_code == 303
    assert "Pseudonymised 2 clicks, 3 conversions and 1 member accounts" in client.get(
        done.headers["Location"]
    ).get_data(as_text=True)
    assert _holding(_dump(app), _personal(world)) == {}
    with app.app_context():
        request = db.session.scalar(select(AuditLog).where(AuditLog.action == "person.erase"))
        assert request.actor_id == world.admin.id and "fran" not in (request.after + request.note).lower()


def test_only_admins_may_erase(app, world):
    finance = make_finance(app)
    before = _dump(app)
    for user in (finance, world.bob):
        client = app.test_client()
        Auth(client).login(user.email)
        assert client.get("/admin/erase-person").status_code == 403
        token = csrf_token(client.get("/account/").get_data(as_text=True))
        data = {"kind": "email", "value": "fran@example.com", "step": "erase", "confirm": "y", "csrf_token": token}
        response = client.post("/admin/erase-person", data=data)
        assert response.status_code == 403
    anonymous = app.test_client().get("/admin/erase-person")
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/login")
    with app.app_context():
        assert db.session.scalar(select(Conversion.customer_email).where(Conversion.order_id == "FRAN-1")) == (
            "Fran@Example.com"
        )
    # Signing in changes sign-ins, throttles and, for staff, spends a recovery code (audited).
    signing_in = ("user_sessions", "throttles", "recovery_codes", "audit_log")
    assert _dump(app, skip=signing_in) == {k: v for k, v in before.items() if k not in signing_in}


def test_erasure_reaches_the_webhook_messages_about_the_conversions(app, runner, redirector):
    """A message carries the customer as the merchant named them, and the metadata: erased with the conversion."""
    from affiliate.models import Delivery
    from tests.webhooks.receivers import add_endpoint

    admin = make_admin(app)
    program = make_program(app, admin, hold_days=0)
    link = make_link(app, make_affiliate(app), program)
    add_endpoint(app, program, admin, "https://127.0.0.1:8443/hook")
    click_id = click(Visitor(redirector, ip="203.0.113.9"), link.code)
    assert redirector.recorder.flush()
    personal = ["fran@example.com", "cus_fran_42", "+44 7700 900123"]
    with app.app_context():
        report = ConversionRequest(
            type=ConversionType.SALE,
            order_id="FRAN-1",
            amount_cents=10_000,
            currency="USD",
            customer_email=personal[0],
            customer_external_id=personal[1],
            click_id=click_id,
            metadata={"phone": personal[2]},
        )
        record_conversion(db.session, db.session.get(Program, program.id), report, now=utcnow())
        db.session.commit()
    assert set(_holding(_dump(app), personal)) == set(personal), "the messages were written with her details"
    result = runner.invoke(args=["erase-person", "--email", personal[0], "--yes"])
    assert result.exit_code == 0, result.output
    assert _holding(_dump(app), personal) == {}
    with app.app_context():
        bodies = db.session.scalars(select(Delivery.body)).all()
        assert bodies and all('"email":"erased-' in body for body in bodies), "still one message per event, erased"


def test_erasure_reaches_the_audit_entries_that_quote_the_member(app, runner):
    """Confirming an address is audited with the address: the entry stays, without saying whose it was."""
    from affiliate.services import accounts

    program = make_program(app, make_admin(app), hold_days=0)
    assert _fran_signs_up(app, f"?program={program.id}").status_code == 302
    with app.app_context():
        member = db.session.scalar(select(User).where(User.email == "fran@example.com"))
        accounts.confirm_email(db.session, member, now=utcnow())  # what the emailed link's page calls
        db.session.commit()
    personal = ["fran@example.com", "Fran Friend"]
    assert "audit_log" in _holding(_dump(app), personal)["fran@example.com"]
    result = runner.invoke(args=["erase-person", "--email", "fran@example.com", "--yes"])
    assert result.exit_code == 0 and "1 member accounts" in result.output, result.output
    assert _holding(_dump(app), personal) == {}
    with app.app_context():
        actions = db.session.scalars(select(AuditLog.action).where(AuditLog.subject_type == "user")).all()
        assert "user.email_verified" in actions, "the entry itself stays"


def test_an_email_with_letters_beyond_ascii_is_found_in_any_case(app, runner):
    """The API keeps an address's local part as sent; the databases' lower() folds ASCII only."""
    program = make_program(app, make_admin(app), hold_days=0)
    with app.app_context():
        stored = db.session.get(Program, program.id)
        for order, email in (("E-1", "Élise@example.com"), ("E-2", "elise@example.com"), ("E-3", "ÉLISE@example.com")):
            report = ConversionRequest(
                type=ConversionType.SALE, order_id=order, amount_cents=1_000, currency="USD", customer_email=email
            )
            record_conversion(db.session, stored, report, now=utcnow())
        db.session.commit()
    result = runner.invoke(args=["erase-person", "--email", "élise@EXAMPLE.com", "--yes"])
    assert result.exit_code == 0 and "0 clicks, 2 conversions" in result.output, result.output
    with app.app_context():
        emails = dict(db.session.execute(select(Conversion.order_id, Conversion.customer_email)).all())
    assert emails["E-2"] == "elise@example.com", "another person, with a plain e, is not her"
    assert emails["E-1"].startswith("erased-") and emails["E-1"] == emails["E-3"], "one person, one pseudonym"


def test_erasure_forgets_the_sign_in_throttles_kept_for_the_members_email(app, runner):
    """A mistyped password and a reset request are counted under keys made from the email: keyed with the server's
    secret (the table alone confirms no guessed address), and forgotten when the person is erased."""
    import hashlib

    from affiliate.models import Throttle
    from affiliate.services import throttles

    program = make_program(app, make_admin(app), hold_days=0)
    assert _fran_signs_up(app, f"?program={program.id}").status_code == 302
    browser = app.test_client()
    login = csrf_token(browser.get("/login").get_data(as_text=True))
    browser.post("/login", data={"email": "fran@example.com", "password": "not her password", "csrf_token": login})
    reset = csrf_token(browser.get("/forgot-password").get_data(as_text=True))
    browser.post("/forgot-password", data={"email": "fran@example.com", "csrf_token": reset})

    def keys() -> list[str]:
        with app.app_context():
            return db.session.scalars(select(Throttle.key_hash)).all()

    hers = throttles.key_of(app.config["SECRET_KEY"], "fran@example.com")[:32]
    assert sum(key.startswith(hers) for key in keys()) == 2, "her failed sign-in and her reset request"
    assert hashlib.sha256(b"fran@example.com").hexdigest() not in keys(), "no digest anyone could test a guess with"
    result = runner.invoke(args=["erase-person", "--email", "fran@example.com", "--yes"])
    assert result.exit_code == 0, result.output
    assert not [key for key in keys() if key.startswith(hers)]
    assert keys(), "the address's own counts (no email in them) stay"


def test_erasure_forgets_the_throttles_of_a_person_with_no_account(app, runner):
    """Someone who only mistyped a password and asked for a reset for an address with no account."""
    from affiliate.models import Throttle
    from affiliate.services import throttles

    browser = app.test_client()
    login = csrf_token(browser.get("/login").get_data(as_text=True))
    browser.post("/login", data={"email": "nobody@example.com", "password": "a guess", "csrf_token": login})
    reset = csrf_token(browser.get("/forgot-password").get_data(as_text=True))
    browser.post("/forgot-password", data={"email": "nobody@example.com", "csrf_token": reset})
    theirs = throttles.key_of(app.config["SECRET_KEY"], "nobody@example.com")[:32]

    def keys() -> list[str]:
        with app.app_context():
            return [key for key in db.session.scalars(select(Throttle.key_hash)) if key.startswith(theirs)]

    assert len(keys()) == 2
    assert runner.invoke(args=["erase-person", "--email", "Nobody@example.com", "--yes"]).exit_code == 0
    assert keys() == []


def test_erasure_reaches_the_stripe_customer_and_the_events_waiting_on_them(app, runner):
    from affiliate.models import StripeCustomer, StripeEvent
    from tests.integrations.test_stripe import SECRET, checkout, deliver, event, invoice

    admin = make_admin(app)
    program = make_program(app, admin)
    alice = make_affiliate(app)
    link = make_link(app, alice, program)
    with app.app_context():
        db.session.get(Program, program.id).stripe_webhook_secret = SECRET
        db.session.commit()
    subscribed = checkout("cs_e1", mode="subscription", amount=5000, reference=link.code, subscription="sub_1")
    waiting = invoice("in_w1", amount=5000, reason="subscription_create", customer="cus_Other2")
    outcomes = deliver(
        app,
        program.id,
        event("checkout.session.completed", subscribed),
        event("invoice.paid", invoice("in_e1", amount=5000, reason="subscription_create")),
        event("invoice.paid", waiting | {"customer_email": "other@example.com"}),
    )
    assert outcomes == ["recorded", "recorded", "waiting"]
    # The second customer has no conversion yet: their first invoice waits for its checkout.
    for customer in ("cus_Alpha1", "cus_Other2"):
        result = runner.invoke(args=["erase-person", "--customer-id", customer, "--yes"])
        assert result.exit_code == 0, result.output
    personal = ["cus_Alpha1", "cs_e1", "cus_Other2", "other@example.com"]
    assert _holding(_dump(app), personal) == {}
    with app.app_context():
        bound = db.session.scalar(select(StripeCustomer))
        assert bound.referral_code == link.code and bound.subscription_id == "sub_1", "what referred them stays"
        statuses = db.session.scalars(select(StripeEvent.status).order_by(StripeEvent.id)).all()
        assert statuses == ["recorded", "recorded", "ignored"]
