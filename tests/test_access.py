"""Every route against a role matrix, CSRF on every form, headers."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from flask import url_for
from sqlalchemy import text

from affiliate.extensions import db
from affiliate.models import ConversionType, Program, User, utcnow
from affiliate.services import adjustments
from affiliate.services.api_keys import issue_key
from affiliate.services.conversions import ConversionRequest, record_conversion
from affiliate.services.ledger import Leg, post
from affiliate.services.payouts import build_batch
from tests.conftest import build_app
from tests.factories import (
    Auth,
    csrf_token,
    make_admin,
    make_affiliate,
    make_finance,
    make_link,
    make_program,
    make_user,
)

PUBLIC = "public"
API_KEY = "api key"  # no session role: a merchant's API key and signature (tested in tests/api)
STRIPE_SIGNED = "stripe"  # Stripe's signature with the program's secret (tested in tests/integrations)
SIGNED_IN = frozenset({"member", "affiliate", "pending", "suspended", "finance", "admin"})
AFFILIATE_ANY_STATUS = frozenset({"affiliate", "pending", "suspended"})

# endpoint -> who may use it. A new route without an entry here fails the suite.
ACCESS: dict[str, str | frozenset[str]] = {
    "static": PUBLIC,
    "main.index": PUBLIC,
    "main.health": PUBLIC,
    "auth.apply": PUBLIC,
    "auth.login": PUBLIC,
    "auth.logout": PUBLIC,
    "auth.signup": PUBLIC,
    "auth.reauth": SIGNED_IN,
    "auth.second_factor_step": PUBLIC,
    "auth.key_options": PUBLIC,  # for the person half-way through signing in, or signed in
    "auth.forgot_password": PUBLIC,
    "auth.reset_password": PUBLIC,
    "auth.verify_email": PUBLIC,
    "auth.resend_verification": SIGNED_IN,
    **{
        f"account_two_factor.{name}": SIGNED_IN
        for name in ("settings", "app_setup", "app_remove", "recovery_codes", "key_options", "key_add", "key_remove")
    },
    "main.snippet_example": PUBLIC,
    "demo_shop.landing": PUBLIC,
    "demo_shop.checkout": PUBLIC,
    "member.home": frozenset({"member"}),
    "partner_conversions.mine": frozenset({"affiliate"}),
    "partner_earnings.index": frozenset({"affiliate"}),
    "partner_postbacks.index": frozenset({"affiliate"}),
    "partner_postbacks.delete": frozenset({"affiliate"}),
    "partner_postbacks.set_enabled": frozenset({"affiliate"}),
    "partner_postbacks.resend": frozenset({"affiliate"}),
    "partner_earnings.statement": frozenset({"affiliate"}),
    "partner_conversions.mine_show": frozenset({"affiliate"}),
    "admin_conversions.index": frozenset({"admin", "finance"}),
    "admin_conversions.show": frozenset({"admin", "finance"}),
    "admin_api_keys.index": frozenset({"admin"}),
    "admin_api_keys.rotate": frozenset({"admin"}),
    "admin_api_keys.retire": frozenset({"admin"}),
    "admin_api_keys.revoke": frozenset({"admin"}),
    "finance.index": frozenset({"admin", "finance"}),
    "finance_review.queue": frozenset({"admin", "finance"}),
    "finance_commissions.index": frozenset({"admin", "finance"}),
    "finance_commissions.decide": frozenset({"admin", "finance"}),
    "finance_payouts.index": frozenset({"admin", "finance"}),
    "finance_payouts.build": frozenset({"admin", "finance"}),
    "finance_payouts.show": frozenset({"admin", "finance"}),
    "finance_payouts.approve": frozenset({"admin", "finance"}),
    "finance_payouts.export": frozenset({"admin", "finance"}),
    "finance_payouts.cancel": frozenset({"admin", "finance"}),
    "finance_payouts.mark_paid": frozenset({"admin", "finance"}),
    "finance_payouts.mark_many_paid": frozenset({"admin", "finance"}),
    "finance_payouts.mark_failed": frozenset({"admin", "finance"}),
    "finance_payouts.yearly": frozenset({"admin", "finance"}),
    "finance_payouts.yearly_csv": frozenset({"admin", "finance"}),
    "finance_audit.index": frozenset({"admin", "finance"}),
    "finance_review.decide": frozenset({"admin", "finance"}),
    "admin_conversions.reject": frozenset({"admin", "finance"}),
    "admin_plans.edit": frozenset({"admin"}),
    "admin_groups.index": frozenset({"admin"}),
    "admin_groups.create": frozenset({"admin"}),
    "admin_groups.move_affiliates": frozenset({"admin"}),
    "admin_enrollments.index": frozenset({"admin"}),
    "admin_enrollments.decide": frozenset({"admin"}),
    "admin_enrollments.invite": frozenset({"admin"}),
    "partner.apply": frozenset({"affiliate"}),
    "partner.join": frozenset({"affiliate"}),
    "admin_fraud_rules.edit": frozenset({"admin"}),
    "api.openapi": PUBLIC,
    "api.conversions": API_KEY,
    "api.refunds": API_KEY,
    "integrations_stripe.receive": STRIPE_SIGNED,
    **{
        f"api_management.{name}": API_KEY
        for name in (
            "plans",
            "add_plan",
            "list_groups",
            "create_group",
            "group_members",
            "move_to_group",
            "list_enrollments",
            "decide_enrollment",
            "invite",
            "list_adjustments",
            "show_adjustment",
            "add_adjustment",
        )
    },
    **{
        f"api_webhooks.{name}": API_KEY
        for name in (
            "list_webhooks",
            "add_webhook",
            "show_webhook",
            "change_webhook",
            "rotate_webhook_secret",
            "delete_webhook",
            "webhook_deliveries",
            "redeliver_webhook",
        )
    },
    "account.profile": SIGNED_IN,
    "account.password": SIGNED_IN,
    "account.sessions": SIGNED_IN,
    "account.end_session": SIGNED_IN,
    "account.end_other_sessions": SIGNED_IN,
    "account.payout": AFFILIATE_ANY_STATUS,
    "account.application": AFFILIATE_ANY_STATUS,
    "account_notifications.settings": SIGNED_IN,
    "auth.unsubscribe": PUBLIC,
    "admin_outbox.index": frozenset({"admin"}),
    "admin_outbox.show": frozenset({"admin"}),
    "admin_outbox.retry": frozenset({"admin"}),
    "admin_people.index": frozenset({"admin"}),
    **{
        f"admin_webhooks.{name}": frozenset({"admin"})
        for name in (
            "index",
            "add_postback",
            "delete_postback",
            "set_postback_enabled",
            "resend_postback",
            "show",
            "rotate",
            "set_enabled",
            "delete",
            "redeliver",
        )
    },
    **{
        f"admin_coupons.{name}": frozenset({"admin"})
        for name in ("index", "for_group", "change", "decide", "stripe", "forget_stripe")
    },
    "partner_coupons.index": frozenset({"affiliate"}),
    "admin_people.reset_second_factor": frozenset({"admin"}),
    "partner.home": frozenset({"affiliate"}),
    "partner.recruits": frozenset({"affiliate"}),
    "partner_links.index": frozenset({"affiliate"}),
    "partner_links.create": frozenset({"affiliate"}),
    "partner_links.pause": frozenset({"affiliate"}),
    "partner_links.resume": frozenset({"affiliate"}),
    "admin.index": frozenset({"admin"}),
    "admin.erase_person": frozenset({"admin"}),
    "admin_affiliates.index": frozenset({"admin", "finance"}),
    "admin_affiliates.show": frozenset({"admin", "finance"}),
    "admin_affiliates.decide": frozenset({"admin"}),
    "admin_affiliates.change_recruiter": frozenset({"admin"}),
    "admin_affiliates.adjust": frozenset({"admin", "finance"}),
    "finance_adjustments.index": frozenset({"admin", "finance"}),
    "finance_adjustments.approve": frozenset({"admin", "finance"}),
    "finance_adjustments.reject": frozenset({"admin", "finance"}),
    "admin_programs.index": frozenset({"admin"}),
    "admin_programs.create": frozenset({"admin"}),
    "admin_programs.edit": frozenset({"admin"}),
    "partner_reports.dashboard": frozenset({"affiliate"}),
    "partner_reports.breakdown": frozenset({"affiliate"}),
    "partner_reports.breakdown_csv": frozenset({"affiliate"}),
    "admin_reports.overview": frozenset({"admin", "finance"}),
    "admin_reports.program_breakdown": frozenset({"admin", "finance"}),
    "admin_reports.program_breakdown_csv": frozenset({"admin", "finance"}),
    "admin_reports.fraud": frozenset({"admin", "finance"}),
    "admin_reports.fraud_csv": frozenset({"admin", "finance"}),
    "admin_reports.payouts": frozenset({"admin", "finance"}),
    "admin_reports.payouts_csv": frozenset({"admin", "finance"}),
    "admin_reports.affiliate": frozenset({"admin", "finance"}),
    "admin_reports.affiliate_breakdown": frozenset({"admin", "finance"}),
    "admin_reports.affiliate_breakdown_csv": frozenset({"admin", "finance"}),
}

PERSONAS = ("anonymous", "member", "affiliate", "pending", "suspended", "finance", "admin")


@pytest.fixture
def world(app):
    """One user per persona, a program, and the ids routes need."""
    admin = make_admin(app)
    users = {
        "member": make_user(app, role="member"),
        "affiliate": make_affiliate(app),
        "pending": make_affiliate(app, status="pending"),
        "suspended": make_affiliate(app, status="suspended"),
        "finance": make_finance(app),
        "admin": admin,
    }
    target = make_affiliate(app, name="Secret Target", email="target-secret@example.com")
    program = make_program(app, admin, name="Secret Program")
    link = make_link(app, target, program, campaign="Secret Campaign")
    with app.app_context():
        key = issue_key(db.session, db.session.get(Program, program.id), "Secret Key", actor=admin, now=utcnow()).key
        report = ConversionRequest(
            type=ConversionType.SALE,
            order_id="secret-order",
            amount_cents=100,
            currency="USD",
            customer_email="target-secret@example.com",
        )
        conversion = record_conversion(db.session, db.session.get(Program, program.id), report, now=utcnow())
        conversion.conversion.affiliate_id = target.id
        # A draft payout batch for the target, built by the finance persona (who therefore cannot approve it).
        owed = db.session.get(User, target.id)
        owed.payout_method, owed.payout_email = "paypal", "target-secret@example.com"
        owed.payout_details_changed_at = utcnow() - timedelta(days=30)
        post(
            db.session,
            "accrual",
            "world",
            [Leg("commission_expense", 6_000, "USD"), Leg(f"affiliate_payable:{target.id}", -6_000, "USD", target.id)],
            now=utcnow(),
        )
        batch, _ = build_batch(db.session, "USD", actor=db.session.get(User, users["finance"].id), now=utcnow())
        # A bonus waiting for approval, added by the finance persona (who therefore cannot approve it either).
        bonus = adjustments.create(
            db.session,
            adjustments.AdjustmentRequest(target.id, program.id, "bonus", 1_000, "Secret Target's launch"),
            actor=db.session.get(User, users["finance"].id),
            thresholds={"*": 0},
            now=utcnow(),
        )
        db.session.commit()
        key_id, conversion_id, batch_id, payout_id = key.id, conversion.conversion.id, batch.id, batch.payouts[0].id
        adjustment_id = bonus.id
    ids = {
        "user_id": target.id,
        "program_id": program.id,
        "link_id": link.id,
        "filename": "css/app.css",
        "key_id": key_id,
        "conversion_id": conversion_id,
        "batch_id": batch_id,
        "payout_id": payout_id,
        "export_format": "paypal",
        "dimension": "day",
        "token": "not-an-invitation",
        "adjustment_id": adjustment_id,
        "group_id": 1,
        "affiliate_id": target.id,
        "session_id": 1,
        "message_id": 1,
        "endpoint_id": 1,
        "delivery_id": 1,
        "postback_id": 1,
        "state": "on",
        "coupon_id": 1,
        "action": "retire",
    }
    return {"users": users, "ids": ids}


def _client_for(app, world, persona):
    client = app.test_client()
    if persona != "anonymous":
        assert Auth(client).login(world["users"][persona].email).status_code == 302
    return client


def _url(app, rule, ids) -> str:
    with app.test_request_context():
        return url_for(rule.endpoint, **{name: ids[name] for name in rule.arguments})


def _allowed(endpoint: str, persona: str) -> bool:
    rule = ACCESS[endpoint]
    return rule == PUBLIC or persona in rule


def _fingerprint(app, skip: tuple[str, ...] = ("throttles",)) -> str:
    """A digest of every table's rows, to prove a request changed nothing."""
    digest = hashlib.sha256()
    with app.app_context():
        for table in sorted(db.metadata.tables):
            if table in skip:
                continue
            rows = db.session.execute(text(f"SELECT * FROM {table} ORDER BY 1")).all()
            digest.update(repr((table, rows)).encode())
    return digest.hexdigest()


def test_every_route_is_in_the_matrix(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert endpoints - ACCESS.keys() == set(), "add new routes to ACCESS with who may use them"
    assert ACCESS.keys() - endpoints == set(), "ACCESS names routes that no longer exist"


@pytest.mark.parametrize("persona", PERSONAS)
def test_route_matrix(app, world, persona):
    client = _client_for(app, world, persona)
    # Signing out at the end revokes the session; a bare POST to the notification settings is a valid
    # "nothing ticked".
    quiet = ("throttles", "user_sessions", "notification_opt_outs")
    before = _fingerprint(app, quiet)
    # Signing out last, so every other route is tried while signed in.
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.endpoint == "auth.logout"):
        url = _url(app, rule, world["ids"])
        if "GET" in rule.methods:
            response = client.get(url)
        else:
            response = client.post(
                url,
                data={
                    "csrf_token": csrf_token(client.get("/login").get_data(as_text=True))
                    if persona == "anonymous"
                    else _token(client)
                },
            )
        body = response.get_data(as_text=True)
        denied = response.status_code == 403 or (
            response.status_code == 302 and response.headers["Location"].startswith("/login")
        )
        if ACCESS[rule.endpoint] == PUBLIC:
            assert response.status_code < 500
        elif ACCESS[rule.endpoint] == STRIPE_SIGNED:
            assert response.status_code in (400, 404), (persona, rule.endpoint, response.status_code)
        elif ACCESS[rule.endpoint] == API_KEY:
            assert response.status_code in (401, 415), (persona, rule.endpoint, response.status_code)
            assert "secret" not in body.lower(), (persona, rule.endpoint)
        elif _allowed(rule.endpoint, persona):
            assert not denied, f"{persona} should reach {rule.endpoint}"
            assert response.status_code < 500
        else:
            assert denied, f"{persona} must not reach {rule.endpoint}: got {response.status_code}"
            for secret in ("Secret Target", "target-secret", "Secret Program", "Secret Campaign"):
                assert secret not in body, (persona, rule.endpoint)
    if persona != "admin":  # the admin's empty decision POST is refused too, but by a form error
        assert _fingerprint(app, quiet) == before, "a GET or a refused POST changed data"


def _token(client) -> str:
    return csrf_token(client.get("/account/").get_data(as_text=True))


def test_no_get_request_changes_anything(app, world):
    for persona in PERSONAS:
        client = _client_for(app, world, persona)
        before = _fingerprint(app)
        for rule in app.url_map.iter_rules():
            if "GET" in rule.methods:
                client.get(_url(app, rule, world["ids"]))
        assert _fingerprint(app) == before, persona


# POSTs that a signed token in their own address authorises instead of a session and its CSRF token.
TOKEN_IN_ADDRESS = frozenset({
    "auth.unsubscribe",  # RFC 8058 one-click: the mail client posts with no session
})  # fmt: skip


def _post_routes(app):
    """Routes behind a session and its CSRF token; the API authenticates each request by key and signature."""
    return [
        rule
        for rule in app.url_map.iter_rules()
        if "POST" in rule.methods
        and ACCESS[rule.endpoint] not in (API_KEY, STRIPE_SIGNED)
        and rule.endpoint not in TOKEN_IN_ADDRESS
    ]


def test_every_form_refuses_missing_or_foreign_csrf_tokens(app, world):
    admin = _client_for(app, world, "admin")
    other = _client_for(app, world, "affiliate")
    foreign_token = _token(other)
    assert _post_routes(app), "there are forms to check"
    for rule in _post_routes(app):
        url = _url(app, rule, world["ids"])
        before = _fingerprint(app)
        payload = {
            "name": "Changed",
            "action": "suspend",
            "reason": "csrf",
            "email": "x@example.com",
            "password": "whatever whatever",
            "current": "x",
            "new": "y",
            "confirm": "y",
        }
        for token in (None, foreign_token, "garbage"):
            data = dict(payload, **({"csrf_token": token} if token else {}))
            response = admin.post(url, data=data)
            assert response.status_code == 400, (rule.endpoint, token)
        assert _fingerprint(app) == before, rule.endpoint


def test_security_headers_on_every_page(app, world):
    client = _client_for(app, world, "admin")
    urls = [_url(app, rule, world["ids"]) for rule in app.url_map.iter_rules() if "GET" in rule.methods]
    for url in [*urls, "/no-such-page"]:
        response = client.get(url)
        headers = response.headers
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], url
        assert "default-src 'self'" in headers["Content-Security-Policy"], url
        assert headers["X-Content-Type-Options"] == "nosniff", url
        assert headers["Referrer-Policy"] == "same-origin", url
        assert headers["X-Frame-Options"] == "DENY", url


def test_signed_in_pages_are_not_cached(app, world):
    client = _client_for(app, world, "affiliate")
    assert client.get("/partner/").headers["Cache-Control"] == "no-store"


def test_error_pages_show_no_stack_trace(database_uri):
    app = build_app(database_uri, TESTING=False, PROPAGATE_EXCEPTIONS=False)

    @app.route("/explode")
    def explode():
        raise RuntimeError("secret internal detail")

    response = app.test_client().get("/explode")
    body = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "secret internal detail" not in body and "Traceback" not in body
    assert "Content-Security-Policy" in response.headers
    missing = app.test_client().get("/nothing-here")
    assert missing.status_code == 404 and "There is nothing at this address." in missing.get_data(as_text=True)


def test_oversized_request_is_413(app, client):
    response = client.post("/login", data={"email": "x" * (2 * 1024 * 1024)})
    assert response.status_code == 413


def test_wrong_methods_are_405_not_500(app, world):
    client = _client_for(app, world, "admin")
    assert client.delete("/admin/programs/").status_code == 405
    assert client.get("/logout").status_code == 405
    assert client.put("/login").status_code == 405
