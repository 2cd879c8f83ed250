"""Admins create and edit programs; bad values are form errors that change nothing."""

from dataclasses import replace

import pytest
from sqlalchemy import func, select

from affiliate.extensions import db
from affiliate.models import AuditLog, CommissionPlan, Program
from tests.conftest import build_app, dispose
from tests.factories import Auth, make_admin, make_program

VALID = {
    "name": "Spring Sale",
    "description": "Earn 20% on every order",
    "status": "active",
    "destination_url": "https://Shop.Example.com:443/signup?src=aff",
    "allowed_hosts": "www.example.com\nBücher.de, www.example.com",
    "fallback_url": "",
    "attribution_window_days": "45",
    "cookie_days": "60",
    "attribution_model": "first_click",
    "hold_days": "14",
    "currency": "EUR",
    "minimum_payout": "25.50",
    "enrollment": "open",
}


def _signed_in_admin(app, auth):
    admin = make_admin(app)
    auth.login(admin.email)
    return admin


def test_admin_creates_program_with_normalised_values(app, client, auth):
    admin = _signed_in_admin(app, auth)
    response = auth.post("/admin/programs/new", VALID)
    assert response.status_code == 302
    listing = client.get("/admin/programs/").get_data(as_text=True)
    assert "Spring Sale" in listing and "€25.50" in listing
    with app.app_context():
        program = db.session.scalar(select(Program).where(Program.name == "Spring Sale"))
        assert program.destination_url == "https://shop.example.com/signup?src=aff"
        assert program.allowed_host_list == ["www.example.com", "xn--bcher-kva.de"]
        assert (program.attribution_window_days, program.cookie_days, program.hold_days) == (45, 60, 14)
        assert (program.attribution_model, program.currency, program.minimum_payout_cents) == (
            "first_click",
            "EUR",
            2550,
        )
        assert db.session.scalar(select(func.count()).where(CommissionPlan.program_id == program.id)) == 1
        audit = db.session.scalar(select(AuditLog).where(AuditLog.subject_type == "program"))
        assert (audit.action, audit.actor_id) == ("program.created", admin.id)


def test_invalid_values_are_form_errors_and_change_nothing(app, client, auth):
    _signed_in_admin(app, auth)
    bad_values = [
        {"destination_url": "http://shop.example.com/"},
        {"destination_url": "javascript:alert(1)"},
        {"destination_url": "https://user:pw@shop.example.com/"},
        {"destination_url": "https://127.0.0.1/"},
        {"destination_url": "https://shop.example.com/\r\nSet-Cookie: x=1"},
        {"destination_url": "not a url"},
        {"destination_url": ""},
        {"allowed_hosts": "evil.test/path"},
        {"allowed_hosts": "https://evil.test"},
        {"allowed_hosts": "10.0.0.1"},
        {"fallback_url": "http://insecure.example.com"},
        {"attribution_window_days": "0"},
        {"attribution_window_days": "366"},
        {"attribution_window_days": "ten"},
        {"attribution_window_days": ""},
        {"cookie_days": "-1"},
        {"hold_days": "9999999999999999999999"},
        {"attribution_model": "random"},
        {"currency": "XXX"},
        {"minimum_payout": "-5"},
        {"minimum_payout": "1.005"},
        {"minimum_payout": "abc"},
        {"minimum_payout": "NaN"},
        {"name": ""},
        {"name": "n" * 121},
    ]
    for change in bad_values:
        response = auth.post("/admin/programs/new", {**VALID, **change})
        assert response.status_code == 200, change
        assert 'class="errors"' in response.get_data(as_text=True), change
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Program)) == 0
        assert (
            db.session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.subject_type == "program")) == 0
        )


def test_yen_minimum_payout_has_no_decimals(app, auth):
    _signed_in_admin(app, auth)
    refused = auth.post("/admin/programs/new", {**VALID, "currency": "JPY", "minimum_payout": "500.50"})
    assert "at most 0 decimal places" in refused.get_data(as_text=True)
    assert auth.post("/admin/programs/new", {**VALID, "currency": "JPY", "minimum_payout": "5000"}).status_code == 302


def test_edit_program_and_duplicate_names(app, client, auth):
    admin = _signed_in_admin(app, auth)
    first = make_program(app, admin, name="First")
    make_program(app, admin, name="Second")
    edit = f"/admin/programs/{first.id}/edit"
    form = client.get(edit).get_data(as_text=True)
    assert "50.00" in form and "shop.example.com" in form
    clash = auth.post(edit, {**VALID, "name": "Second"})
    assert clash.status_code == 200 and "already has this name" in clash.get_data(as_text=True)
    assert auth.post(edit, {**VALID, "name": "First renamed", "status": "paused"}).status_code == 302
    with app.app_context():
        program = db.session.get(Program, first.id)
        assert (program.name, program.status, program.currency) == ("First renamed", "paused", "EUR")
        actions = db.session.scalars(
            select(AuditLog.action).where(AuditLog.subject_id == first.id, AuditLog.subject_type == "program")
        ).all()
        assert sorted(actions) == ["program.created", "program.updated"]


def test_unknown_program_is_404(app, client, auth):
    _signed_in_admin(app, auth)
    assert client.get("/admin/programs/999999/edit").status_code == 404


@pytest.mark.parametrize("allowed", [False, True])
def test_loopback_http_destination_needs_the_setting(database_uri, allowed):
    """ALLOW_HTTP_LOOPBACK_DESTINATIONS (make run) lets a program send shoppers to http on this machine only."""
    app = build_app(database_uri, ALLOW_HTTP_LOOPBACK_DESTINATIONS=allowed)
    auth = Auth(app.test_client())
    _signed_in_admin(app, auth)
    for still_refused in (
        {"destination_url": "http://shop.example.com/"},
        {"destination_url": "http://127.0.0.2:8000/"},
        {"destination_url": "http://user@127.0.0.1:8000/"},
        {"destination_url": "https://127.0.0.1:8000/"},
        {"fallback_url": "http://0.0.0.0:8000/"},
        {"allowed_hosts": "localhost"},
    ):
        response = auth.post("/admin/programs/new", {**VALID, **still_refused})
        assert response.status_code == 200 and 'class="errors"' in response.get_data(as_text=True), still_refused
    shop = {"destination_url": "http://127.0.0.1:8000/demo-shop/", "fallback_url": "HTTP://LOCALHOST:8000/demo-shop/"}
    response = auth.post("/admin/programs/new", {**VALID, **shop})
    with app.app_context():
        program = db.session.scalar(select(Program))
    if allowed:
        assert response.status_code == 302
        assert (program.destination_url, program.fallback_url) == (
            "http://127.0.0.1:8000/demo-shop/",
            "http://localhost:8000/demo-shop/",
        )
    else:
        assert response.status_code == 200 and "URL must start with https://." in response.get_data(as_text=True)
        assert program is None
    dispose(app)


def test_the_currency_is_fixed_once_money_or_a_plan_amount_is_in_it(app, auth):
    """Amounts are stored in the currency's minor units: 60.00 USD owed must not become 6,000 yen nobody can pay."""
    from affiliate.models import utcnow
    from affiliate.services.adjustments import AdjustmentRequest, create
    from tests.factories import make_affiliate
    from tests.money.test_accrual import report, set_plan

    admin = _signed_in_admin(app, auth)
    sold, priced, adjusted, fresh = (make_program(app, admin, name=name) for name in ("Sold", "Priced", "Adj", "New"))
    report(app, sold, make_affiliate(app).id, "o-1", 6_000)
    set_plan(app, priced.id, flat_cents=500)
    with app.app_context():
        request = AdjustmentRequest(make_affiliate(app).id, adjusted.id, "bonus", 500, "Welcome bonus")
        create(db.session, request, actor=db.session.get(type(admin), admin.id), thresholds={"*": 10_000}, now=utcnow())
        db.session.commit()
    for program, why in ((sold, "recorded sales or adjustments in USD"), (priced, "names amounts in USD"),
                         (adjusted, "recorded sales or adjustments in USD")):  # fmt: skip
        refused = auth.post(
            f"/admin/programs/{program.id}/edit",
            {**VALID, "name": program.name, "currency": "JPY", "minimum_payout": "5000"},
        )
        page = refused.get_data(as_text=True)
        assert refused.status_code == 200 and why in page
        with app.app_context():
            assert db.session.get(Program, program.id).currency == "USD"
    report(app, fresh, make_affiliate(app).id, "signup-1", 0, type="signup")  # a signup carries no money
    changed = auth.post(f"/admin/programs/{fresh.id}/edit", {**VALID, "name": "New", "currency": "JPY",
                                                             "minimum_payout": "5000"})  # fmt: skip
    assert changed.status_code == 302, "a program with no money and no amounts in its plan may still change"
    with app.app_context():
        assert db.session.get(Program, fresh.id).currency == "JPY"


def test_a_sale_checked_before_a_currency_change_and_stored_after_it_is_refused(app, auth):
    """The API checks a sale against the program it read, then stores it in a second transaction; a currency
    changed in between (the program had no money yet, so it could) must not leave a USD sale in a JPY program.
    The same holds for a conversion recorded in one transaction (signups, Stripe), stored after the change."""
    from affiliate.models import Conversion, ConversionType, utcnow
    from affiliate.services.conversions import (
        ConversionError,
        ConversionRequest,
        prepare_conversion,
        record_conversion,
        store_conversion,
    )

    admin = _signed_in_admin(app, auth)
    program = make_program(app, admin, name="Switching")
    sale = ConversionRequest(type=ConversionType.SALE, order_id="o-1", amount_cents=6_000, currency="USD")
    with app.app_context():
        prepared = prepare_conversion(db.session, db.session.get(Program, program.id), sale, now=utcnow())
        read_before = db.session.get(Program, program.id)
        db.session.expunge(read_before)  # as a caller holding it across the change has it: USD
        db.session.commit()
        changed = auth.post(f"/admin/programs/{program.id}/edit", {**VALID, "name": "Switching", "currency": "JPY",
                                                                   "minimum_payout": "5000"})  # fmt: skip
        assert changed.status_code == 302
        with pytest.raises(ConversionError, match="in JPY") as refused:
            store_conversion(db.session, prepared)
        assert refused.value.code == "currency_mismatch"
        db.session.rollback()
        with pytest.raises(ConversionError, match="in JPY"):
            record_conversion(db.session, read_before, replace(sale, order_id="o-2"), now=utcnow())
        db.session.rollback()
        assert db.session.scalar(select(func.count(Conversion.id))) == 0
        # A signup carries no money: checked before the change and stored after it, it is in the new currency
        # (a member's hosted signup must not fail for it).
        signup = ConversionRequest(type=ConversionType.SIGNUP, order_id="member-1", amount_cents=0, currency="USD")
        stored = record_conversion(db.session, read_before, signup, now=utcnow()).conversion
        db.session.commit()
        assert stored.currency == "JPY"


def test_a_fallback_the_redirector_would_never_use_and_wildcard_hosts_are_form_errors(app, auth):
    """The redirector sends shoppers only to the destination's host or a listed one: a fallback elsewhere would be a
    plain 404 for every paused link, so the form says so; a wildcard would be kept as a host no URL has."""
    _signed_in_admin(app, auth)
    elsewhere = auth.post("/admin/programs/new", {**VALID, "fallback_url": "https://help.example.org/paused"})
    assert elsewhere.status_code == 200 and "neither the destination" in elsewhere.get_data(as_text=True)
    wildcard = auth.post("/admin/programs/new", {**VALID, "allowed_hosts": "*.example.org"})
    assert wildcard.status_code == 200 and "wildcards are not supported" in wildcard.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count(Program.id))) == 0
    listed = {
        **VALID,
        "allowed_hosts": "www.example.com\nhelp.example.org",
        "fallback_url": "https://help.example.org/p",
    }
    assert auth.post("/admin/programs/new", listed).status_code == 302


@pytest.mark.parametrize("left_out", ["allowed_hosts", "fallback_url", "description"])
def test_an_optional_field_left_out_of_the_request_reads_as_empty(app, client, auth, left_out):
    """A script or an old page may not send an optional field at all: the program is made as if it were empty."""
    _signed_in_admin(app, auth)
    response = auth.post("/admin/programs/new", {key: value for key, value in VALID.items() if key != left_out})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    with app.app_context():
        assert db.session.scalar(select(Program).where(Program.name == "Spring Sale")) is not None
