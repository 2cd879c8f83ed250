"""The management API: plans, groups, enrollments, invitations and adjustments of the key's own program.

Each test drives the API as a merchant's script would (signed requests through the HTTP layer) and checks what a
person would notice: what the portal then shows or pays, what the ledger holds, what the audit log says.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from affiliate.extensions import db
from affiliate.models import (
    Adjustment,
    ApiKey,
    AuditLog,
    Commission,
    CommissionPlan,
    EnrollmentPolicy,
    GroupMembership,
    LedgerTransaction,
    PartnerGroup,
    Program,
    User,
    utcnow,
)
from affiliate.services import accrual, adjustments, enrollment
from affiliate.services.api_keys import hash_token
from affiliate.services.ledger import balance
from tests.api.helpers import make_merchant
from tests.factories import Auth, make_admin, make_affiliate, make_finance, make_program
from tests.money.test_accrual import report

ALL = "all"
TEN_PERCENT = {"percent_bps": 1_000}


@pytest.fixture
def admin(app):
    return make_admin(app)


@pytest.fixture
def merchant(app, admin):
    return make_merchant(app, make_program(app, admin, hold_days=0), admin, scopes=ALL)


def counts(app) -> tuple[int, ...]:
    """Rows a refused request must leave as they were."""
    with app.app_context():
        return tuple(
            db.session.scalar(select(func.count()).select_from(model))
            for model in (CommissionPlan, PartnerGroup, GroupMembership, Adjustment, LedgerTransaction, AuditLog)
        )


def accrue(app) -> None:
    with app.app_context():
        accrual.run(db.session, now=utcnow() + timedelta(seconds=1))
        db.session.commit()


def earned(app, affiliate_id: int) -> int:
    with app.app_context():
        return db.session.scalar(
            select(func.coalesce(func.sum(Commission.amount_cents), 0)).where(Commission.affiliate_id == affiliate_id)
        )


# ---- scopes and who a key acts for ---------------------------------------------------------------------------


def test_a_checkout_key_keeps_exactly_conversions_and_refunds(app, admin):
    checkout = make_merchant(app, make_program(app, admin), admin)
    assert checkout.sale("scoped-1").status_code == 201
    for path in ("/api/v1/plans", "/api/v1/groups", "/api/v1/enrollments", "/api/v1/adjustments"):
        refused = checkout.get(path)
        assert refused.status_code == 403 and refused.json["error"]["code"] == "insufficient_scope", path
    before = counts(app)
    assert checkout.post("/api/v1/groups", {"name": "VIP"}).status_code == 403
    assert counts(app) == before


def test_each_scope_opens_only_its_own_operations(app, admin):
    reader = make_merchant(app, make_program(app, admin), admin, scopes=["plans:read", "adjustments:read"])
    assert reader.get("/api/v1/plans").status_code == 200
    assert reader.get("/api/v1/adjustments").status_code == 200
    assert reader.post("/api/v1/plans", {"terms": TEN_PERCENT}).status_code == 403
    assert reader.sale("no-conversions-scope").status_code == 403
    assert reader.get("/api/v1/groups").status_code == 403


def test_unsigned_and_unknown_keys_are_refused_before_anything_is_read(app, merchant):
    assert merchant.client.get("/api/v1/plans").status_code == 401
    assert merchant.client.get("/api/v1/plans", headers={"Authorization": "Bearer ct_nothing_here"}).status_code == 401
    wrong = type(merchant)(merchant.client, merchant.program, merchant.token, "whsec_not-the-secret")
    assert wrong.get("/api/v1/plans").json["error"]["code"] == "signature_mismatch"


def test_a_key_stops_managing_when_its_issuer_is_no_longer_an_admin(app, admin, merchant):
    with app.app_context():
        db.session.get(User, admin.id).role = "finance"
        db.session.commit()
    refused = merchant.get("/api/v1/plans")
    assert refused.status_code == 403 and refused.json["error"]["code"] == "issuer_not_admin"
    assert merchant.post("/api/v1/groups", {"name": "VIP"}).status_code == 403
    assert merchant.sale("still-reporting").status_code == 201, "the checkout keeps reporting sales"


def test_a_key_reaches_only_its_own_program(app, admin, merchant):
    other = make_merchant(app, make_program(app, admin), admin, scopes=ALL)
    group = other.post("/api/v1/groups", {"name": "Theirs"}).json["group"]
    alice = make_affiliate(app)
    bonus = other.post(
        "/api/v1/adjustments", {"affiliate_id": alice.id, "kind": "bonus", "amount": 500, "reason": "Theirs"}
    ).json["adjustment"]
    assert [g["name"] for g in merchant.get("/api/v1/groups").json["groups"]] == ["Default"]
    assert merchant.get("/api/v1/adjustments").json["adjustments"] == []
    assert merchant.get(f"/api/v1/adjustments/{bonus['id']}").status_code == 404
    assert merchant.get(f"/api/v1/groups/{group['id']}/members").status_code == 404
    before = counts(app)
    moved = merchant.post("/api/v1/group-memberships", {"affiliate_ids": [alice.id], "group_id": group["id"]})
    assert moved.status_code == 422 and moved.json["error"]["field"] == "group_id"
    plan = merchant.post("/api/v1/plans", {"group_id": group["id"], "terms": TEN_PERCENT})
    assert plan.status_code == 422 and plan.json["error"]["field"] == "group_id"
    invite = merchant.post("/api/v1/invitations", {"group_id": group["id"]})
    assert invite.status_code == 422
    assert counts(app) == before


# ---- plans ----------------------------------------------------------------------------------------------------


def test_a_plan_version_added_through_the_api_pays_the_next_sales(app, admin, merchant):
    alice = make_affiliate(app)
    terms = {"percent_bps": 1_000, "tier_basis": "count", "tier_scope": "whole_period",
             "tiers": [{"threshold": 3, "percent_bps": 2_000}], "recurring_months": None}  # fmt: skip
    added = merchant.post("/api/v1/plans", {"terms": terms})
    assert added.status_code == 201, added.json
    plan = added.json["plan"]
    assert plan["in_force"] and plan["group_id"] is None and plan["affiliate_id"] is None
    assert plan["terms"]["tiers"] == [{"threshold": 3, "percent_bps": 2_000, "flat": 0}]
    assert plan["terms"]["recurring_months"] is None, "null is for the customer's lifetime"
    assert plan["in_words"].startswith("10% of each sale; from 3 sales in a month: 20%")
    for n in range(3):
        report(app, merchant.program, alice.id, f"api-plan-{n}", 10_000)
    accrue(app)
    assert earned(app, alice.id) == 3 * 2_000, "the third sale reaches the tier, which raises the whole month"
    listed = merchant.get("/api/v1/plans").json["plans"]
    assert [p["id"] for p in listed if p["in_force"]] == [plan["id"]]
    key_id = _key_id(app, merchant)
    with app.app_context():
        entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "plan.version_added"))
        assert (entry.actor_id, entry.actor_key_id) == (admin.id, key_id)


def test_a_later_version_waits_for_its_start_and_the_past_is_never_rewritten(app, merchant):
    now_version = merchant.post("/api/v1/plans", {"terms": TEN_PERCENT}).json["plan"]
    later = (utcnow() + timedelta(days=3)).isoformat()
    future = merchant.post("/api/v1/plans", {"effective_from": later, "terms": {"percent_bps": 5_000}})
    assert future.status_code == 201 and not future.json["plan"]["in_force"]
    in_force = [p["id"] for p in merchant.get("/api/v1/plans").json["plans"] if p["in_force"]]
    assert in_force == [now_version["id"]]
    before = counts(app)
    past = merchant.post("/api/v1/plans", {"effective_from": "2020-01-01T00:00:00Z", "terms": TEN_PERCENT})
    assert past.status_code == 422 and "never to the past" in past.json["error"]["message"]
    assert counts(app) == before


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"terms": {"percent_bps": 10_001}}, 422, "terms.percent_bps"),
        ({"terms": {"percent_bps": -1}}, 422, "terms.percent_bps"),
        ({"terms": {"percent_bps": 12.5}}, 422, "terms.percent_bps"),
        ({"terms": {"percent_bps": "10"}}, 422, "terms.percent_bps"),
        ({"terms": {"flat": True}}, 422, "terms.flat"),
        ({"terms": {"tier_basis": "clicks"}}, 422, "terms.tier_basis"),
        ({"terms": {"tiers": [{"threshold": 3}, {"threshold": 3}]}}, 422, "terms"),
        ({"terms": {"tiers": [{"percent_bps": 100}]}}, 422, "terms.tiers[0].threshold"),
        ({"terms": {"tiers": [{"threshold": 0}]}}, 422, "terms.tiers[0].threshold"),
        ({"terms": {"tiers": [{"threshold": 1, "rate": 5}]}}, 400, "terms.tiers[0].rate"),
        ({"terms": {"tiers": [{"threshold": n + 1} for n in range(21)]}}, 422, "terms.tiers"),
        ({"terms": {"recurring_months": 1201}}, 422, "terms.recurring_months"),
        ({"terms": {"bonus": 500}}, 422, "terms"),
        ({"terms": {"bonus_threshold": 0, "bonus": 500}}, 422, "terms.bonus_threshold"),
        ({"terms": {"percent": 10}}, 400, "terms.percent"),
        ({"terms": []}, 422, "terms"),
        ({}, 422, "terms"),
        ({"terms": TEN_PERCENT, "group_id": 2**31}, 422, "group_id"),
        ({"terms": TEN_PERCENT, "affiliate_id": 0}, 422, "affiliate_id"),
        ({"terms": TEN_PERCENT, "effective_from": "tomorrow"}, 422, "effective_from"),
        ({"terms": TEN_PERCENT, "effective_from": "2030-01-01T00:00:00"}, 422, "effective_from"),
        ({"terms": TEN_PERCENT, "owner": "me"}, 400, "owner"),
    ],
)
def test_a_plan_the_arithmetic_cannot_pay_is_refused_and_nothing_is_saved(app, merchant, body, status, field):
    before = counts(app)
    refused = merchant.post("/api/v1/plans", body)
    assert refused.status_code == status, refused.json
    assert refused.json["error"]["field"] == field
    assert counts(app) == before


def test_an_affiliates_own_plan_comes_before_the_groups(app, merchant):
    alice, bob = make_affiliate(app), make_affiliate(app)
    merchant.post("/api/v1/plans", {"terms": TEN_PERCENT})
    own = merchant.post("/api/v1/plans", {"affiliate_id": alice.id, "terms": {"flat": 700}})
    assert own.status_code == 201 and own.json["plan"]["affiliate_id"] == alice.id
    report(app, merchant.program, alice.id, "own-1", 10_000)
    report(app, merchant.program, bob.id, "own-2", 10_000)
    accrue(app)
    assert (earned(app, alice.id), earned(app, bob.id)) == (700, 1_000)


# ---- groups ---------------------------------------------------------------------------------------------------


def test_a_vip_group_with_its_own_plan_pays_the_affiliates_moved_into_it(app, merchant):
    alice, bob, carol = make_affiliate(app), make_affiliate(app), make_affiliate(app)
    created = merchant.post("/api/v1/groups", {"name": "  VIP  "})
    assert created.status_code == 201
    vip = created.json["group"]
    assert vip["name"] == "VIP"
    assert merchant.post("/api/v1/groups", {"name": "vip"}).status_code == 422, "names are unique, any case"
    assert merchant.post("/api/v1/groups", {"name": "Default"}).status_code == 422
    assert merchant.post("/api/v1/groups", {"name": "Ärzte"}).status_code == 201
    for taken in ("Ärzte", "ärzte", "ÄRZTE"):
        assert merchant.post("/api/v1/groups", {"name": taken}).status_code == 422, "beyond ASCII too"
    merchant.post("/api/v1/plans", {"terms": TEN_PERCENT})
    merchant.post("/api/v1/plans", {"group_id": vip["id"], "terms": {"percent_bps": 2_500}})
    moved = merchant.post("/api/v1/group-memberships", {"affiliate_ids": [alice.id, bob.id], "group_id": vip["id"]})
    assert moved.json == {"moved": 2, "group_id": vip["id"]}
    again = merchant.post("/api/v1/group-memberships", {"affiliate_ids": [alice.id], "group_id": vip["id"]})
    assert again.json["moved"] == 0, "already there"
    listed = {g["name"]: g["members"] for g in merchant.get("/api/v1/groups").json["groups"]}
    assert listed["VIP"] == 2
    # The default group: carol alone, and neither a pending applicant nor an affiliate removed from the program.
    make_affiliate(app, status="pending")
    removed = make_affiliate(app)
    with app.app_context():
        admin_id = db.session.scalar(select(User.id).where(User.role == "admin"))
        enrollment.decide(db.session, db.session.get(Program, merchant.program.id), removed.id, "remove",
                          actor_id=admin_id, reason="Spam", now=utcnow())  # fmt: skip
        db.session.commit()
    assert {g["name"]: g["members"] for g in merchant.get("/api/v1/groups").json["groups"]}["Default"] == 1
    first = merchant.get(f"/api/v1/groups/{vip['id']}/members", query={"limit": 1}).json
    assert [m["affiliate_id"] for m in first["members"]] == [alice.id] and first["next_after"] == alice.id
    rest = merchant.get(f"/api/v1/groups/{vip['id']}/members", query={"after": alice.id, "limit": 1}).json
    assert [m["affiliate_id"] for m in rest["members"]] == [bob.id]
    back = merchant.post("/api/v1/group-memberships", {"affiliate_ids": [bob.id], "group_id": None})
    assert back.json["moved"] == 1
    for who, order in ((alice, "vip-1"), (bob, "vip-2"), (carol, "vip-3")):
        report(app, merchant.program, who.id, order, 10_000)
    accrue(app)
    assert [earned(app, who.id) for who in (alice, bob, carol)] == [2_500, 1_000, 1_000]
    key_id = _key_id(app, merchant)
    with app.app_context():
        moves = db.session.scalars(select(AuditLog).where(AuditLog.action == "group.moved")).all()
        assert len(moves) == 3 and {entry.actor_key_id for entry in moves} == {key_id}


@pytest.mark.parametrize(
    "body",
    [
        {"affiliate_ids": [], "group_id": None},
        {"affiliate_ids": list(range(1, 502)), "group_id": None},
        {"affiliate_ids": ["1"], "group_id": None},
        {"affiliate_ids": [2**31], "group_id": None},
        {"affiliate_ids": 5, "group_id": None},
        {"affiliate_ids": [1]},
    ],
)
def test_a_move_that_names_no_affiliates_is_refused(app, merchant, body):
    before = counts(app)
    assert merchant.post("/api/v1/group-memberships", body).status_code == 422
    assert counts(app) == before


def test_only_affiliates_are_moved_into_groups(app, admin, merchant):
    vip = merchant.post("/api/v1/groups", {"name": "VIP"}).json["group"]
    before = counts(app)
    refused = merchant.post("/api/v1/group-memberships", {"affiliate_ids": [admin.id], "group_id": vip["id"]})
    assert refused.status_code == 422 and refused.json["error"]["field"] == "affiliate_ids"
    assert counts(app) == before


# ---- enrollment -----------------------------------------------------------------------------------------------


def test_applications_are_decided_through_the_api_and_the_affiliate_sees_the_outcome(app, admin):
    program = make_program(app, admin, enrollment=EnrollmentPolicy.APPLICATION)
    merchant = make_merchant(app, program, admin, scopes=ALL)
    alice, bob = make_affiliate(app), make_affiliate(app)
    with app.app_context():
        for who in (alice, bob):
            enrollment.apply(
                db.session, db.session.get(Program, program.id), db.session.get(User, who.id), now=utcnow()
            )
        db.session.commit()
    pending = merchant.get("/api/v1/enrollments", query={"status": "pending"}).json
    assert pending["enrollment_policy"] == "application"
    assert [e["affiliate_id"] for e in pending["enrollments"]] == [alice.id, bob.id]
    approved = merchant.post(f"/api/v1/enrollments/{alice.id}/decision", {"decision": "approve"})
    assert approved.status_code == 200 and approved.json["enrollment"]["status"] == "active"
    no_reason = merchant.post(f"/api/v1/enrollments/{bob.id}/decision", {"decision": "reject", "reason": "  "})
    assert no_reason.status_code == 422 and no_reason.json["error"]["field"] == "reason"
    rejected = merchant.post(
        f"/api/v1/enrollments/{bob.id}/decision", {"decision": "reject", "reason": "Coupon sites are not a fit"}
    )
    assert rejected.json["enrollment"] == {
        **rejected.json["enrollment"],
        "status": "rejected",
        "reason": "Coupon sites are not a fit",
    }
    twice = merchant.post(f"/api/v1/enrollments/{bob.id}/decision", {"decision": "reject", "reason": "Again"})
    assert twice.status_code == 409 and twice.json["error"]["code"] == "enrollment_conflict"
    assert twice.json["error"]["message"] == "This affiliate's enrollment is rejected; it cannot be rejected."
    assert merchant.post("/api/v1/enrollments/999999/decision", {"decision": "approve"}).status_code == 404
    assert merchant.post(f"/api/v1/enrollments/{admin.id}/decision", {"decision": "approve"}).status_code == 404
    odd = merchant.post(f"/api/v1/enrollments/{alice.id}/decision", {"decision": "promote"})
    assert odd.status_code == 422 and odd.json["error"]["field"] == "decision"
    removed = merchant.post(
        f"/api/v1/enrollments/{alice.id}/decision", {"decision": "remove", "reason": "Brand bidding"}
    )
    assert removed.json["enrollment"]["status"] == "removed"
    browser = app.test_client()
    Auth(browser).login(bob.email)
    assert "Coupon sites are not a fit" in browser.get("/partner/").get_data(as_text=True)
    listed = merchant.get("/api/v1/enrollments").json["enrollments"]
    assert {e["affiliate_id"]: e["status"] for e in listed} == {alice.id: "removed", bob.id: "rejected"}


def test_an_invitation_from_the_api_enrolls_the_affiliate_in_its_group(app, admin):
    program = make_program(app, admin, enrollment=EnrollmentPolicy.PRIVATE)
    merchant = make_merchant(app, program, admin, scopes=ALL)
    vip = merchant.post("/api/v1/groups", {"name": "VIP"}).json["group"]
    invited = merchant.post("/api/v1/invitations", {"group_id": vip["id"]})
    assert invited.status_code == 201 and invited.json["group_id"] == vip["id"]
    path = re.sub(r"^https?://[^/]+", "", invited.json["url"])
    alice = make_affiliate(app)
    browser = app.test_client()
    auth = Auth(browser)
    auth.login(alice.email)
    assert auth.post(path, {}).status_code == 302
    members = merchant.get(f"/api/v1/groups/{vip['id']}/members").json["members"]
    assert [m["affiliate_id"] for m in members] == [alice.id]
    (record,) = merchant.get("/api/v1/enrollments").json["enrollments"]
    assert (record["affiliate_id"], record["status"], record["group_id"]) == (alice.id, "active", vip["id"])


@pytest.mark.parametrize(
    "query",
    [
        {"status": "approved"},
        {"after": "0"},
        {"after": "x"},
        {"after": str(2**31)},
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "-1"},
        {"limit": "1e3"},
        {"limit": "00100000"},
        {"limit": "1" * 5000},
    ],
)
def test_list_parameters_out_of_bounds_are_a_400(app, merchant, query):
    answer = merchant.get("/api/v1/enrollments", query=query)
    assert answer.status_code == 400 and answer.json["error"]["code"] == "invalid_parameter"


# ---- adjustments ----------------------------------------------------------------------------------------------


def test_a_small_bonus_is_posted_at_once_and_a_large_one_waits_for_a_finance_user(app, admin, merchant):
    alice = make_affiliate(app)
    small = merchant.post(
        "/api/v1/adjustments", {"affiliate_id": alice.id, "kind": "bonus", "amount": 5_000, "reason": "Launch week"}
    )
    assert small.status_code == 201 and small.json["adjustment"]["status"] == "approved"
    assert small.json["adjustment"]["currency"] == "USD"
    large = merchant.post(
        "/api/v1/adjustments", {"affiliate_id": alice.id, "kind": "bonus", "amount": 50_000, "reason": "Black Friday"}
    )
    assert large.status_code == 201 and large.json["adjustment"]["status"] == "pending_approval"
    clawback = merchant.post(
        "/api/v1/adjustments",
        {"affiliate_id": alice.id, "kind": "clawback", "amount": 1_500, "reason": "Chargeback on order 77"},
    )
    assert clawback.json["adjustment"]["status"] == "approved"
    assert _payable(app, alice) == 5_000 - 1_500, "the pending bonus is not owed yet"
    pending_id = large.json["adjustment"]["id"]
    with app.app_context():
        issuer = db.session.get(User, admin.id)
        with pytest.raises(adjustments.AdjustmentError, match="cannot approve"):
            adjustments.approve(db.session, pending_id, approver=issuer, now=utcnow())
        db.session.rollback()
        adjustments.approve(db.session, pending_id, approver=db.session.get(User, make_finance(app).id), now=utcnow())
        db.session.commit()
    assert _payable(app, alice) == 5_000 - 1_500 + 50_000
    shown = merchant.get(f"/api/v1/adjustments/{pending_id}").json["adjustment"]
    assert shown["status"] == "approved" and shown["approved_at"] is not None
    waiting = merchant.get("/api/v1/adjustments", query={"status": "pending_approval"}).json["adjustments"]
    assert waiting == []
    key_id = _key_id(app, merchant)
    with app.app_context():
        made = db.session.scalars(select(AuditLog).where(AuditLog.action == "adjustment.create")).all()
        assert {(entry.actor_id, entry.actor_key_id) for entry in made} == {(admin.id, key_id)}
    browser = app.test_client()
    Auth(browser).login(make_finance(app).email)
    audit_page = browser.get("/finance/audit/?subject=adjustment").get_data(as_text=True)
    prefix = merchant.token.split("_")[1]
    assert f"{admin.email} via API key <code>ct_{prefix}_…</code>" in audit_page


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": "gift"}, "kind"),
        ({"amount": 0}, "amount"),
        ({"amount": -100}, "amount"),
        ({"amount": 10.5}, "amount"),
        ({"amount": 10**15}, "amount"),
        ({"reason": ""}, "reason"),
        ({"reason": "   "}, "reason"),
        ({"reason": "x" * 1001}, "reason"),
        ({"affiliate_id": 999_999}, "affiliate_id"),
        ({"affiliate_id": None}, "affiliate_id"),
    ],
)
def test_an_adjustment_with_a_bad_field_changes_nothing(app, merchant, fields, field):
    alice = make_affiliate(app)
    before = counts(app)
    body = {"affiliate_id": alice.id, "kind": "bonus", "amount": 500, "reason": "Launch", **fields}
    refused = merchant.post("/api/v1/adjustments", body)
    assert refused.status_code == 422, refused.json
    assert refused.json["error"]["field"] == field
    assert counts(app) == before


def test_a_bonus_for_a_staff_member_is_refused(app, admin, merchant):
    before = counts(app)
    body = {"affiliate_id": admin.id, "kind": "bonus", "amount": 500, "reason": "Myself"}
    assert merchant.post("/api/v1/adjustments", body).status_code == 422
    assert counts(app) == before


# ---- idempotency ----------------------------------------------------------------------------------------------


def test_a_retried_write_gets_the_first_answer_and_posts_nothing_twice(app, merchant):
    alice = make_affiliate(app)
    body = {"affiliate_id": alice.id, "kind": "bonus", "amount": 2_000, "reason": "Retry me"}
    first = merchant.post("/api/v1/adjustments", body, request_id="bonus-7")
    again = merchant.post("/api/v1/adjustments", body, request_id="bonus-7")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert _payable(app, alice) == 2_000
    other = merchant.post("/api/v1/adjustments", {**body, "amount": 3_000}, request_id="bonus-7")
    assert other.status_code == 409 and other.json["error"]["code"] == "request_id_reused"
    elsewhere = merchant.post("/api/v1/groups", {"name": "VIP"}, request_id="bonus-7")
    assert elsewhere.status_code == 409
    assert _payable(app, alice) == 2_000


def test_a_refused_write_can_be_sent_again_with_the_same_id_once_corrected(app, merchant):
    alice = make_affiliate(app)
    body = {"affiliate_id": alice.id, "kind": "bonus", "amount": 0, "reason": "Typo"}
    assert merchant.post("/api/v1/adjustments", body, request_id="fix-1").status_code == 422
    fixed = merchant.post("/api/v1/adjustments", {**body, "amount": 900}, request_id="fix-1")
    assert fixed.status_code == 201 and _payable(app, alice) == 900


def test_the_same_write_sent_at_once_from_many_connections_is_made_once(app, merchant):
    alice = make_affiliate(app)
    raw = json.dumps({"affiliate_id": alice.id, "kind": "bonus", "amount": 1_000, "reason": "Race"}).encode()
    answers: list[tuple[int, str]] = []
    start = threading.Barrier(8)

    def send() -> None:
        sender = type(merchant)(app.test_client(), merchant.program, merchant.token, merchant.secret)
        start.wait(timeout=30)
        response = sender.post("/api/v1/adjustments", None, raw=raw, request_id="race-bonus")
        answers.append((response.status_code, response.get_data(as_text=True)))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 8
    assert {status for status, _ in answers} <= {201, 409}
    assert any(status == 201 for status, _ in answers)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Adjustment)) == 1
    assert _payable(app, alice) == 1_000


def _payable(app, affiliate) -> int:
    with app.app_context():
        return -balance(db.session, f"affiliate_payable:{affiliate.id}", "USD")


def _key_id(app, merchant) -> int:
    with app.app_context():
        return db.session.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_token(merchant.token)))
