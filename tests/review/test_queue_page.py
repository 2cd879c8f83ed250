"""The review queue as finance uses it: found by affiliate name and order id, sorted by a header, a select-all box,
the ticks and note kept after a form error, and the filters kept after a decision."""

from __future__ import annotations

import json
import re

from affiliate.extensions import db
from affiliate.models import Conversion
from tests.factories import Auth, csrf_token, make_admin, make_affiliate, make_finance, make_program
from tests.money.test_accrual import report


def _flagged(app, program, affiliate, order: str, amount: int, score: int = 40) -> int:
    conversion_id = report(app, program, affiliate.id, order, amount, status="flagged")
    with app.app_context():
        conversion = db.session.get(Conversion, conversion_id)
        conversion.fraud_score = score
        conversion.fraud_reasons = json.dumps([{"rule": "too_fast", "action": "review", "evidence": "2 s"}])
        db.session.commit()
    return conversion_id


def _world(app):
    program = make_program(app, make_admin(app), name="Shoe Shop")
    ada, bea = make_affiliate(app, name="Ada Lovelace"), make_affiliate(app, name="Bea Bright")
    ids = {
        "small": _flagged(app, program, ada, "Q-100", 1_000, score=90),
        "large": _flagged(app, program, ada, "Q-200", 80_000, score=40),
        "bea": _flagged(app, program, bea, "Q-300", 5_000, score=60),
    }
    finance = app.test_client()
    Auth(finance).login(make_finance(app).email)
    return program, ada, ids, finance


def test_the_queue_is_searched_by_affiliate_and_order_and_sorted_by_a_header(app):
    _, ada, _, finance = _world(app)
    by_name = finance.get("/finance/review/?affiliate=LOVELACE").get_data(as_text=True)
    assert "Q-100" in by_name and "Q-200" in by_name and "Q-300" not in by_name
    assert "2 waiting" in by_name
    assert f'href="/admin/affiliates/{ada.id}">Ada Lovelace</a>' in by_name
    by_order = finance.get("/finance/review/?order=q-3").get_data(as_text=True)
    assert "Q-300" in by_order and "Q-100" not in by_order
    largest = finance.get("/finance/review/?affiliate=lovelace&sort=amount&dir=desc").get_data(as_text=True)
    assert largest.index("Q-200") < largest.index("Q-100")
    assert 'aria-sort="descending"' in largest
    assert 'action="/finance/review/decide?affiliate=lovelace&amp;sort=amount&amp;dir=desc"' in largest
    riskiest = finance.get("/finance/review/?sort=score&dir=desc").get_data(as_text=True)
    assert riskiest.index("Q-100") < riskiest.index("Q-300") < riskiest.index("Q-200")
    score_link = re.search(r'href="([^"]*sort=score[^"]*)"', largest).group(1)
    assert "affiliate=lovelace" in score_link, "a header keeps the search"


def test_the_queue_has_a_select_all_box_and_keeps_ticks_and_note_after_a_form_error(app):
    program, _, ids, finance = _world(app)
    page = finance.get(f"/finance/review/?program={program.id}").get_data(as_text=True)
    assert re.search(r'<input type="checkbox" data-select-all="ids" aria-label="[^"]+" hidden>', page)
    assert 'data-selected-count aria-live="polite"' in page
    assert "js/select-all.js" in page
    refused = finance.post(
        f"/finance/review/decide?program={program.id}",
        data={"ids": [ids["small"], ids["large"]], "decision": "reject", "csrf_token": csrf_token(page)},
    )
    assert refused.status_code == 422, "rejecting needs a note"
    body = refused.get_data(as_text=True)
    for conversion_id in (ids["small"], ids["large"]):
        assert re.search(rf'value="{conversion_id}" id="pick-{conversion_id}" aria-label="[^"]*" checked', body)
    assert f'value="{ids["bea"]}" id="pick-{ids["bea"]}" aria-label="Select Q-300">' in body, "not ticked"
    assert "2 selected" in body
    noted = finance.post(
        f"/finance/review/decide?program={program.id}",
        data={
            "ids": [ids["small"]],
            "decision": "sideways",
            "note": "looked at the logs",
            "csrf_token": csrf_token(page),
        },
    )
    assert noted.status_code == 422 and "looked at the logs</textarea>" in noted.get_data(as_text=True)


def test_a_decision_goes_back_to_the_same_filtered_sorted_queue(app):
    program, _, ids, finance = _world(app)
    listing = f"/finance/review/?program={program.id}&affiliate=lovelace&order=Q&sort=amount&dir=desc"
    page = finance.get(listing).get_data(as_text=True)
    decided = finance.post(
        f"/finance/review/decide?program={program.id}&affiliate=lovelace&order=Q&sort=amount&dir=desc",
        data={"ids": [ids["large"]], "decision": "approve", "csrf_token": csrf_token(page)},
    )
    assert decided.status_code == 302 and decided.headers["Location"].endswith(listing)
    after = finance.get(decided.headers["Location"]).get_data(as_text=True)
    assert "1 conversion approved." in after and "Q-200" not in after.split("</form>", 1)[1]
