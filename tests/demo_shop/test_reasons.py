"""The shopper's explanation of their order's credit, each from a real answer of the conversion API.

Clicks go through the redirector and sales through the signed API and its services (attribution, screening),
as the shop's server reports them; the shop reads only the answer, so each case checks what the shopper would
read on the confirmation page for that reason, and that it never names a rule or an affiliate's id.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from affiliate.demo_shop.merchant import StoredSale
from affiliate.demo_shop.reasons import CREDITED, HELD_BACK, NOT_CREDITED, REJECTED, explain
from affiliate.extensions import db
from affiliate.models import Click
from affiliate.services import attribution, fraud
from affiliate.services.fraud import DEFAULT_RULES
from tests.api.helpers import click, world
from tests.factories import Visitor

SLOW = timedelta(minutes=5)  # a shopper who takes their time: the too-fast rule stays quiet


def answered(merchant, order: str, **fields) -> StoredSale:
    response = merchant.sale(order, 5000, **fields)
    assert response.status_code == 201, response.json
    return StoredSale(response.json["conversion"], replayed=False)


def age_clicks(app, by: timedelta) -> None:
    """Make every stored click older, as if the shopper had clicked ``by`` ago."""
    with app.app_context():
        for stored in db.session.scalars(select(Click)).all():
            stored.clicked_at -= by
        db.session.commit()


def shown(explanation) -> str:
    return " ".join((explanation.status, *explanation.reasons, *explanation.held_back, explanation.next_step))


def assert_redacted(text: str, people) -> None:
    assert not any(rule in text for rule in DEFAULT_RULES if "_" in rule), text
    assert not re.search(r"#\s*\d", text) and "affiliate" not in text.lower(), text
    assert all(person.name not in text for person in people.values()), text


def test_a_click_through_the_partners_link_credits_them_and_says_the_commission_waits(app, redirector):
    merchant, people, links = world(app)
    clicked = click(Visitor(redirector), links["alice"].code)
    redirector.recorder.flush()
    age_clicks(app, SLOW)
    explanation = explain(answered(merchant, "shop-1", click_id=clicked))
    assert explanation.credited and explanation.reasons == (CREDITED["click_id"],)
    assert explanation.status == "Recorded" and "hold period" in explanation.next_step
    assert explanation.held_back == ()
    assert_redacted(shown(explanation), people)


def test_no_click_says_to_come_through_a_partners_link(app):
    merchant, people, _ = world(app)
    explanation = explain(answered(merchant, "shop-2"))
    assert not explanation.credited and explanation.reasons == (NOT_CREDITED["no_click"],)
    assert "did not come through a partner's link" in explanation.reasons[0] and explanation.next_step == ""
    assert_redacted(shown(explanation), people)


def test_a_bot_click_is_explained_as_automated_not_as_a_missing_link(app, redirector):
    merchant, people, links = world(app)
    response = Visitor(redirector).get(
        f"/r/{links['alice'].code}", headers={"User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1)"}
    )
    assert response.status_code == 302
    redirector.recorder.flush()
    with app.app_context():
        bot = db.session.query(Click).one()
        assert bot.is_bot
        click_id = bot.click_id
    age_clicks(app, SLOW)
    explanation = explain(answered(merchant, "shop-3", click_id=click_id))
    assert not explanation.credited and explanation.reasons == (NOT_CREDITED["bot"],)
    assert "automated" in explanation.reasons[0] and "did not come through" not in shown(explanation)
    assert_redacted(shown(explanation), people)


def test_a_click_older_than_the_window_says_so(app, redirector):
    merchant, people, links = world(app)
    clicked = click(Visitor(redirector), links["alice"].code)
    redirector.recorder.flush()
    age_clicks(app, timedelta(days=merchant.program.attribution_window_days + 1))
    explanation = explain(answered(merchant, "shop-4", click_id=clicked))
    assert not explanation.credited and explanation.reasons == (NOT_CREDITED["outside_window"],)
    assert "longer ago than this program credits" in explanation.reasons[0]
    assert_redacted(shown(explanation), people)


def test_a_self_referral_names_the_partners_own_purchase_not_the_seconds_after_a_click(app, redirector):
    merchant, people, links = world(app)
    clicked = click(Visitor(redirector), links["alice"].code)
    redirector.recorder.flush()
    age_clicks(app, SLOW)
    answer = answered(merchant, "shop-5", click_id=clicked, customer={"email": people["alice"].email})
    explanation = explain(answer)
    assert answer.conversion["status"] == "rejected" and explanation.status == "Not credited"
    assert explanation.held_back == (HELD_BACK["self_referral"],)
    assert "own purchases" in explanation.held_back[0] and "seconds" not in shown(explanation)
    assert explanation.next_step == "The partner earns nothing from this order."
    assert not explanation.credited and explanation.reasons == (REJECTED,), "never both credited and rejected"
    assert_redacted(shown(explanation), people)


def test_a_sale_seconds_after_its_click_waits_for_review_and_says_why(app, redirector):
    merchant, people, links = world(app)
    clicked = click(Visitor(redirector), links["alice"].code)
    redirector.recorder.flush()
    explanation = explain(answered(merchant, "shop-6", click_id=clicked))
    assert explanation.status == "Waiting for review" and explanation.held_back == (HELD_BACK["too_fast"],)
    assert "reviews the order" in explanation.next_step
    assert_redacted(shown(explanation), people)


def test_a_surer_click_of_another_partner_credits_them_and_the_other_is_not_blamed(app, redirector):
    merchant, people, links = world(app)
    shopper = Visitor(redirector)
    click(shopper, links["bob"].code)
    won = click(shopper, links["alice"].code)
    redirector.recorder.flush()
    age_clicks(app, SLOW)
    answer = answered(merchant, "shop-7", click_id=won, visitor_id=shopper.get_cookie("ct_vid").value)
    assert answer.attribution["reasons"] == ["weaker_match"], "Bob's click matched by the visitor cookie only"
    explanation = explain(answer)
    assert explanation.credited and explanation.reasons == (CREDITED["click_id"],)
    assert_redacted(shown(explanation), people)


def test_an_unknown_coupon_says_it_is_not_the_programs(app):
    merchant, people, _ = world(app)
    explanation = explain(answered(merchant, "shop-8", coupon="NOSUCHCODE"))
    assert not explanation.credited and explanation.reasons == (NOT_CREDITED["code_unknown"],)
    assert_redacted(shown(explanation), people)


def test_the_same_order_again_reads_the_same(app, redirector):
    merchant, _, links = world(app)
    clicked = click(Visitor(redirector), links["alice"].code)
    redirector.recorder.flush()
    age_clicks(app, SLOW)
    first = merchant.sale("shop-9", 5000, click_id=clicked)
    again = merchant.sale("shop-9", 5000, click_id=clicked)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert explain(StoredSale(again.json["conversion"], True)) == explain(StoredSale(first.json["conversion"], False))


def test_every_reason_the_trace_and_the_fraud_rules_give_has_its_own_explanation():
    source = Path(attribution.__file__).read_text()
    # Every reason attribute() writes on a line that does not win: the tests a click fails, how it loses to
    # another, and what becomes of a binding or a code.
    failed = set(re.findall(r'(?:return|reason =) "([a-z_]+)"', source)) - {"click_id", "visitor", "fingerprint"}
    losing = set(re.findall(r'"lost",\s*"([a-z_]+)"', source)) | set(re.findall(r'"ignored", "([a-z_]+)"', source))
    given = (failed | losing | set(attribution.LOST) | set(attribution.CODE_IGNORED)) - {"won"}
    assert {"bot", "outside_window", "no_match", "code_unknown", "binding_expired", "click_wins"} <= given
    assert given <= set(NOT_CREDITED)
    score_conversion = Path(fraud.__file__).read_text().split("def score_conversion")[1].split("\ndef ")[0]
    conversion_rules = set(re.findall(r'check\(\s*"([a-z_]+)"', score_conversion))
    assert set(HELD_BACK) <= conversion_rules and "self_referral" in HELD_BACK
    click_rules = {"bot", "click_flooding", "duplicate_click", "cookie_stuffing"}  # they reject clicks, not sales
    assert set(HELD_BACK) | click_rules == set(DEFAULT_RULES)
