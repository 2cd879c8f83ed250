"""The commissions page's bulk decision: back to the same filtered list after deciding, and the same rows ticked
after a form error."""

from __future__ import annotations

from affiliate.extensions import db
from affiliate.models import Commission
from tests.factories import Auth, csrf_token, make_admin, make_affiliate, make_finance, make_program
from tests.money.test_accrual import _accrued, set_plan


def _world(app):
    program = make_program(app, make_admin(app), hold_days=30)
    set_plan(app, program.id, percent_bps=1_000)
    alice = make_affiliate(app)
    first, second = _accrued(app, program, alice, "first"), _accrued(app, program, alice, "second")
    finance = app.test_client()
    Auth(finance).login(make_finance(app).email)
    return program, alice, first, second, finance


def test_a_decision_keeps_the_filters(app):
    program, alice, first, _, finance = _world(app)
    listing = f"/finance/commissions/?status=pending&program={program.id}&affiliate={alice.id}"
    page = finance.get(listing).get_data(as_text=True)
    assert (
        f'action="/finance/commissions/decide?status=pending&amp;program={program.id}&amp;affiliate={alice.id}"' in page
    )
    decided = finance.post(
        f"/finance/commissions/decide?status=pending&program={program.id}&affiliate={alice.id}",
        data={"ids": first, "decision": "approve", "csrf_token": csrf_token(page)},
    )
    assert decided.status_code == 302
    assert decided.headers["Location"].endswith(listing), "back to the filtered list"
    with app.app_context():
        assert db.session.get(Commission, first).status == "approved"


def test_a_form_error_keeps_the_ticked_rows_and_the_note(app):
    program, _, first, second, finance = _world(app)
    page = finance.get(f"/finance/commissions/?program={program.id}").get_data(as_text=True)
    refused = finance.post(
        f"/finance/commissions/decide?program={program.id}",
        data={
            "ids": [first, second],
            "decision": "sideways",
            "note": "checked by hand",
            "csrf_token": csrf_token(page),
        },
    )
    assert refused.status_code == 422
    body = refused.get_data(as_text=True)
    assert "Tick at least one commission and choose approve or reject." in body
    for commission_id in (first, second):
        assert f'value="{commission_id}" aria-label="Select commission {commission_id}" checked' in body
    assert "checked by hand</textarea>" in body
    assert f'action="/finance/commissions/decide?program={program.id}"' in body
    with app.app_context():
        assert {db.session.get(Commission, i).status for i in (first, second)} == {"pending"}


def test_commissions_are_found_by_affiliate_name_and_order_id_and_sorted(app):
    program, _alice, first, _second, finance = _world(app)
    bob = make_affiliate(app, name="Bob Stone")
    bobs = _accrued(app, program, bob, "BOB-ORDER-9", 5_000_000)  # earns 10%: $5,000.00
    by_name = finance.get("/finance/commissions/?affiliate=stone").get_data(as_text=True)
    assert "BOB-ORDER-9" in by_name and "first" not in by_name.split("<tbody>", 1)[1]
    assert f'href="/admin/affiliates/{bob.id}">Bob Stone</a>' in by_name
    assert "$5,000.00" in by_name, "the amount, with a thousands separator"
    by_order = finance.get("/finance/commissions/?order=bob-order").get_data(as_text=True)
    assert f"Select commission {bobs}" in by_order and f"Select commission {first}" not in by_order
    largest = finance.get("/finance/commissions/?sort=amount&dir=desc").get_data(as_text=True)
    assert largest.index(f"Select commission {bobs}") < largest.index(f"Select commission {first}")
    oldest = finance.get("/finance/commissions/?sort=amount&dir=asc").get_data(as_text=True)
    assert oldest.index(f"Select commission {first}") < oldest.index(f"Select commission {bobs}")
    assert finance.get("/finance/commissions/?status=nonsense&sort=rule&dir=up").status_code == 200


def test_the_commissions_table_has_a_select_all_box_and_a_decision_keeps_the_search_and_order(app):
    program, _alice, first, second, finance = _world(app)
    listing = f"/finance/commissions/?program={program.id}&affiliate=User&order=s&sort=amount&dir=desc"
    page = finance.get(listing).get_data(as_text=True)
    assert 'data-select-all="ids"' in page and "js/select-all.js" in page
    assert 'data-selected-count aria-live="polite"' in page
    decided = finance.post(
        listing.replace("/finance/commissions/", "/finance/commissions/decide"),
        data={"ids": [first, second], "decision": "approve", "csrf_token": csrf_token(page)},
    )
    assert decided.status_code == 302 and decided.headers["Location"].endswith(listing)
    with app.app_context():
        assert {db.session.get(Commission, i).status for i in (first, second)} == {"approved"}
