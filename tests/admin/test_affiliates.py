"""Staff lists of affiliates, and fields a form must never let anyone set."""

from affiliate.extensions import db
from affiliate.models import User
from tests.factories import make_admin, make_affiliate, make_finance


def test_admin_lists_pending_applications_and_can_search(app, client, auth):
    admin = make_admin(app)
    make_affiliate(app, name="Waiting Wendy", status="pending")
    make_affiliate(app, name="Active Andy")
    auth.login(admin.email)
    pending = client.get("/admin/affiliates/").get_data(as_text=True)
    assert "Waiting Wendy" in pending and "Active Andy" not in pending
    everyone = client.get("/admin/affiliates/?status=all&q=andy").get_data(as_text=True)
    assert "Active Andy" in everyone and "Waiting Wendy" not in everyone
    assert client.get("/admin/affiliates/?status=bogus&page=abc").status_code == 200


def test_finance_sees_affiliates_but_cannot_decide(app, client, auth):
    finance = make_finance(app)
    pending = make_affiliate(app, status="pending")
    auth.login(finance.email)
    page = client.get(f"/admin/affiliates/{pending.id}").get_data(as_text=True)
    assert pending.email in page and "Approve" not in page
    response = auth.post(
        f"/admin/affiliates/{pending.id}/decision", {"action": "approve"}, token_from="/admin/affiliates/"
    )
    assert response.status_code == 403
    with app.app_context():
        assert db.session.get(User, pending.id).status == "pending"


def test_staff_pages_404_for_non_affiliate_ids(app, client, auth):
    admin = make_admin(app)
    auth.login(admin.email)
    assert client.get(f"/admin/affiliates/{admin.id}").status_code == 404
    assert client.get("/admin/affiliates/123456").status_code == 404


def test_mass_assignment_changes_nothing(app, client, auth):
    """Extra fields posted to a form (status, role, referral code) are ignored."""
    alice = make_affiliate(app, status="pending")
    auth.login(alice.email)
    response = auth.post(
        "/account/",
        {
            "name": "Alice B",
            "role": "admin",
            "status": "active",
            "referral_code": "AAAAAAAAAA",
            "email": "boss@example.com",
            "payout_method": "paypal",
        },
    )
    assert response.status_code == 302
    with app.app_context():
        user = db.session.get(User, alice.id)
        assert user.name == "Alice B"
        assert (user.role, user.status, user.email) == ("affiliate", "pending", alice.email)
        assert user.referral_code == alice.referral_code and user.payout_method is None


def test_payout_details_are_validated_and_audited(app, client, auth):
    alice = make_affiliate(app)
    auth.login(alice.email)
    bad = [
        {"method": ""},
        {"method": "paypal", "email": ""},
        {"method": "bank", "account_name": "Alice", "iban": "GB00 WEST 1234 5698 7654 32"},
        {"method": "bank", "account_name": "", "iban": "GB82 WEST 1234 5698 7654 32"},
        {"method": "bitcoin"},
    ]
    for data in bad:
        response = auth.post("/account/payout", data)
        assert response.status_code == 200 and 'class="errors"' in response.get_data(as_text=True), data
    good = auth.post(
        "/account/payout", {"method": "bank", "account_name": "Alice A", "iban": "gb82 west 1234 5698 7654 32"}
    )
    assert good.status_code == 302
    with app.app_context():
        user = db.session.get(User, alice.id)
        assert (user.payout_method, user.payout_iban) == ("bank", "GB82WEST12345698765432")
        assert user.payout_details_changed_at is not None and user.has_payout_details


def test_affiliate_list_pages_keep_the_filter(app, client, auth):
    admin = make_admin(app)
    for n in range(55):
        make_affiliate(app, name=f"Waiting {n:02d}", status="pending")
    auth.login(admin.email)
    first = client.get("/admin/affiliates/?status=pending").get_data(as_text=True)
    assert "Page 1 of 2" in first and "/admin/affiliates/?page=2&amp;status=pending" in first
    second = client.get("/admin/affiliates/?status=pending&page=2").get_data(as_text=True)
    assert "Page 2 of 2" in second and second.count("Waiting ") == 5
