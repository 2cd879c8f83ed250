"""What a click records and how the redirect answers."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import text

from affiliate.extensions import db
from affiliate.models import EnrollmentPolicy, FraudRule, Link, Program, User, utcnow
from affiliate.services import enrollment
from redirector import Redirector, create_redirector
from tests.factories import Visitor, make_link, make_program
from tests.redirector.helpers import CHROME, IPHONE, all_clicks, clicks_held, live, setup_link


def test_click_redirects_once_with_click_id_and_cookies(app, shopper):
    s = setup_link(app)
    response = shopper.get(f"/r/{s.link.code}?utm_source=news&utm_medium=email&other=x", headers={"User-Agent": IPHONE})
    assert response.status_code == 302
    assert response.headers["Cache-Control"] == "no-store"
    location = urlsplit(response.headers["Location"])
    assert (location.scheme, location.hostname, location.path) == ("https", "shop.example.com", "/signup")
    query = parse_qs(location.query)
    assert query["lang"] == ["en"] and query["utm_source"] == ["news"] and query["utm_medium"] == ["email"]
    assert "other" not in query
    [click] = all_clicks(app)
    assert query["ct_click"] == [click.click_id]
    cookies = {c.key: c for c in shopper._cookies.values()}
    assert cookies[f"ct_{s.program.id}"].value == click.click_id
    assert cookies["ct_vid"].value == click.visitor_id
    program_cookie = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"ct_{s.program.id}="))
    assert "Max-Age=3888000" in program_cookie and "HttpOnly" in program_cookie and "SameSite=Lax" in program_cookie


def test_a_query_padded_past_64_parameters_keeps_those_at_its_start(app, shopper):
    s = setup_link(app)
    padding = "&".join(f"pad{n}=x" for n in range(70))
    response = shopper.get(f"/r/{s.link.code}?utm_source=news&sub1=top&{padding}&utm_medium=late")
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["utm_source"] == ["news"] and "utm_medium" not in query, "the first 64 parameters are read"
    [click] = all_clicks(app)
    assert click.sub1 == "top"


def test_a_click_carrying_every_ad_click_id_is_stored_with_the_names_that_fit(app, shopper):
    """Twelve ad networks' click id parameters on one link come to more than the column holds: the click is
    stored (PostgreSQL refused the whole batch before, and every click behind it waited), with the first names."""
    from affiliate.services.fraud import PAID_CLICK_PARAMS

    s = setup_link(app)
    query = "&".join(f"{name}=1" for name in PAID_CLICK_PARAMS)
    assert len(",".join(PAID_CLICK_PARAMS)) > 64
    assert shopper.get(f"/r/{s.link.code}?{query}").status_code == 302
    [click] = all_clicks(app)
    assert 0 < len(click.paid_click) <= 64 and click.paid_click.startswith(PAID_CLICK_PARAMS[0])


def test_every_field_is_recorded(app, shopper):
    s = setup_link(app, campaign="spring", subs=("newsletter", "top", None, None, None))
    shopper.get(
        f"/r/{s.link.code}?sub2=override&sub3=" + "x" * 400,
        headers={
            "User-Agent": IPHONE,
            "Referer": "https://blog.example.org/post",
            "Accept-Language": "en-GB,en;q=0.9",
            "Sec-Fetch-Site": "cross-site",
            "Sec-Fetch-Mode": "navigate",
            "Sec-Fetch-Dest": "document",
            "Sec-Fetch-User": "?1",
        },
        environ_base={"REMOTE_ADDR": "81.2.69.160"},
    )
    [click] = all_clicks(app)
    assert len(click.click_id) == 32 and len(click.visitor_id) == 32
    assert (click.link_id, click.affiliate_id, click.program_id) == (s.link.id, s.affiliate.id, s.program.id)
    assert click.ip == "81.2.69.160" and click.ip_prefix == "81.2.69.0/24" and len(click.ip_hash) == 64
    assert "81.2.69.160" not in click.ip_hash
    assert (click.device_type, click.device_brand, click.device_model) == ("mobile", "Apple", "iPhone")
    assert (click.os, click.browser) == ("iOS", "Mobile Safari")
    assert click.is_bot is False and click.bot_reason is None
    assert (click.country, click.city) == ("GB", "Willesden")
    assert click.referrer == "https://blog.example.org/post"
    assert (click.sub1, click.sub2, click.sub3) == ("newsletter", "override", "x" * 255)
    assert click.sec_fetch == "cross-site/navigate/document/?1"
    assert len(click.fingerprint) == 32
    assert click.is_unique is True
    assert click.clicked_at.tzinfo is not None


@pytest.mark.parametrize(
    ("method", "headers", "reason"),
    [
        ("GET", {"User-Agent": ""}, "empty_user_agent"),
        (
            "GET",
            {"User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"},
            "known_bot",
        ),
        (
            "GET",
            {"User-Agent": "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"},
            "link_preview",
        ),
        ("GET", {"User-Agent": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"}, "link_preview"),
        (
            "GET",
            {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0 Safari/537.36"},
            "headless_browser",
        ),
        ("GET", {"User-Agent": "curl/8.5.0"}, "automation_tool"),
        ("GET", {"User-Agent": "python-requests/2.32.3"}, "automation_tool"),
        ("GET", {"User-Agent": CHROME, "Purpose": "prefetch"}, "prefetch"),
        ("GET", {"User-Agent": CHROME, "Sec-Purpose": "prefetch;prerender"}, "prefetch"),
        ("HEAD", {"User-Agent": CHROME}, "head_request"),
    ],
)
def test_bots_and_previews_are_recorded_as_bots(app, shopper, method, headers, reason):
    s = setup_link(app)
    response = shopper.open(f"/r/{s.link.code}", method=method, headers=headers)
    assert response.status_code == 302
    [click] = all_clicks(app)
    assert click.is_bot is True and click.bot_reason == reason and click.device_type == "bot"


def test_real_browsers_are_not_bots(app, shopper):
    s = setup_link(app)
    for agent in (IPHONE, CHROME):
        shopper.get(f"/r/{s.link.code}", headers={"User-Agent": agent})
    assert [c.is_bot for c in all_clicks(app)] == [False, False]


def test_uniqueness_per_visitor_and_device_within_the_window(app, redirector):
    s = setup_link(app)
    other = setup_link(app)
    alice = Visitor(redirector, "198.51.100.1")
    bob = Visitor(redirector, "198.51.100.77")
    alice.get(f"/r/{s.link.code}", headers={"User-Agent": CHROME})  # unique
    alice.get(f"/r/{s.link.code}", headers={"User-Agent": CHROME})  # same visitor cookie
    alice.get(f"/r/{other.link.code}", headers={"User-Agent": CHROME})  # another link
    bob.get(f"/r/{s.link.code}", headers={"User-Agent": IPHONE})  # another person
    cookieless = Visitor(redirector, "198.51.100.77")
    cookieless.get(f"/r/{s.link.code}", headers={"User-Agent": IPHONE})  # bob again, cookies cleared: same device
    assert [c.is_unique for c in all_clicks(app)] == [True, False, True, True, False]


def test_clicks_outside_the_window_are_unique_again(app, database_uri):
    from datetime import UTC, datetime, timedelta

    s = setup_link(app)
    now = [datetime(2026, 1, 1, 12, 0, tzinfo=UTC)]
    red = live(Redirector(dict(app.config), clock=lambda: now[0]))
    try:
        client = Visitor(red, "198.51.100.1")
        for step in (0, 3599, 2):  # t=0 unique; t=59:59 repeat; t=60:01 past the hour from the first
            now[0] += timedelta(seconds=step)
            client.get(f"/r/{s.link.code}", headers={"User-Agent": CHROME})
    finally:
        red.close()
    assert [c.is_unique for c in all_clicks(app)] == [True, False, False]


@pytest.mark.parametrize(("gap_minutes", "earlier_unique"), [(30, False), (120, True)])
def test_a_click_stored_after_a_later_one_is_judged_as_in_time_order(app, gap_minutes, earlier_unique):
    """Another node's ingester, or a click log replayed after a crash, can store a later click first."""
    from datetime import UTC, datetime, timedelta

    s = setup_link(app)
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    now = [start + timedelta(minutes=gap_minutes)]
    red = live(Redirector(dict(app.config), clock=lambda: now[0]))
    try:
        client = Visitor(red, "198.51.100.1")
        client.get(f"/r/{s.link.code}", headers={"User-Agent": CHROME})  # the later click, stored first
        assert red.recorder.flush()
        now[0] = start
        client.get(f"/r/{s.link.code}", headers={"User-Agent": CHROME})
        assert red.recorder.flush()
    finally:
        red.close()
    # Within the hour the pair keeps one unique click, as in time order; two hours apart, both count.
    in_time_order = sorted(all_clicks(app), key=lambda click: click.clicked_at)
    assert [click.is_unique for click in in_time_order] == [earlier_unique, True]


def test_alike_clicks_in_one_batch_are_judged_by_each_programs_own_rules(app, redirector):
    """Two programs' clicks with the same evidence, stored together, each get their own program's verdict.

    One affiliate's links, so that they share a batch and its lane on PostgreSQL too."""
    strict = setup_link(app)
    other = make_program(app, strict.admin, allowed_hosts=("shop.example.com",))
    lenient = make_link(app, strict.affiliate, other)
    with app.app_context():
        db.session.add(
            FraudRule(program_id=strict.program.id, rule="paid_traffic", action="reject", weight=50, settings="{}")
        )
        db.session.commit()
    shopper = Visitor(redirector, "198.51.100.9")
    with clicks_held(redirector):  # one batch
        for code in (strict.link.code, lenient.code, strict.link.code):
            shopper.get(f"/r/{code}?gclid=abc", headers={"User-Agent": CHROME})
    clicks = {(c.link_id, c.is_unique): c for c in all_clicks(app)}
    assert clicks[(strict.link.id, True)].fraud_action == "reject"
    assert "paid_traffic" in clicks[(strict.link.id, True)].fraud_reasons
    assert clicks[(lenient.id, True)].fraud_action is None, "the other program lets ad traffic through"
    assert clicks[(strict.link.id, False)].fraud_action == "reject"


def test_paused_and_unknown_links(app, shopper):
    s = setup_link(app)
    assert shopper.get("/r/Nope1234").status_code == 404
    with app.app_context():
        db.session.get(Link, s.link.id).active = False
        db.session.commit()
    fresh = live(create_redirector({**app.config, "LINK_CACHE_SECONDS": 0}))
    try:
        paused = Visitor(fresh).get(f"/r/{s.link.code}")
        assert paused.status_code == 404 and b"Link not found" in paused.data
        with app.app_context():
            db.session.get(Program, s.program.id).fallback_url = "https://www.example.com/"
            db.session.commit()
        fallback = Visitor(fresh).get(f"/r/{s.link.code}")
        assert fallback.status_code == 302 and fallback.headers["Location"] == "https://www.example.com/"
    finally:
        fresh.close()
    assert all_clicks(app) == []


def test_link_lookups_leave_no_transaction_open_and_stay_prepared(app):
    """A worker looks links up for as long as it lives: a transaction left open would hold back the database's
    cleanup, and a lookup planned afresh every time costs PostgreSQL more than running it."""
    s = setup_link(app)
    fresh = live(create_redirector({**app.config, "LINK_CACHE_SECONDS": 0}))  # every click looks its link up
    try:
        for _ in range(6):
            assert Visitor(fresh).get(f"/r/{s.link.code}").status_code == 302
        reader = fresh.links._local.connection.dbapi_connection
        if fresh.links._engine.dialect.name == "sqlite":
            assert not reader.in_transaction
        else:
            with app.app_context():
                state = db.session.execute(
                    text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": reader.info.backend_pid}
                ).scalar()
            assert state == "idle"
            prepared = reader.execute("SELECT statement FROM pg_prepared_statements").fetchall()
            assert any("FROM links l" in statement for (statement,) in prepared), prepared
    finally:
        fresh.close()
    assert len(all_clicks(app)) == 6


def test_suspended_affiliates_links_still_redirect_but_never_earn(app, shopper):
    s = setup_link(app)
    with app.app_context():
        db.session.get(User, s.affiliate.id).status = "suspended"
        db.session.commit()
    assert shopper.get(f"/r/{s.link.code}", headers={"User-Agent": CHROME}).status_code == 302
    [click] = all_clicks(app)
    assert click.fraud_action == "reject" and "affiliate_inactive" in click.fraud_reasons


def test_clicks_of_an_affiliate_removed_from_the_program_are_rejected_with_the_reason(app, shopper):
    s = setup_link(app)
    with app.app_context():
        program = db.session.get(Program, s.program.id)
        enrollment.decide(
            db.session,
            program,
            s.affiliate.id,
            "remove",
            actor_id=s.admin.id,
            reason="Bidding on our brand name",
            now=utcnow(),
        )
        db.session.commit()
    answer = shopper.get(f"/r/{s.link.code}", headers={"User-Agent": CHROME})
    assert answer.status_code == 302, "the shopper still reaches the merchant"
    [click] = all_clicks(app)
    assert click.fraud_action == "reject"
    [reason] = json.loads(click.fraud_reasons)
    assert reason["rule"] == "affiliate_not_enrolled"
    assert reason["evidence"] == "removed from the program: Bidding on our brand name"


def test_clicks_for_a_program_by_application_earn_only_once_the_affiliate_is_admitted(app):
    s = setup_link(app)
    with app.app_context():
        db.session.get(Program, s.program.id).enrollment = EnrollmentPolicy.APPLICATION
        db.session.commit()
    # A redirector that never caches a lookup: one started earlier may have cached the link as it stood.
    fresh = live(create_redirector({**app.config, "LINK_CACHE_SECONDS": 0}))
    shopper = Visitor(fresh)
    shopper.get(f"/r/{s.link.code}", headers={"User-Agent": CHROME})
    with app.app_context():
        program = db.session.get(Program, s.program.id)
        enrollment.apply(db.session, program, db.session.get(User, s.affiliate.id), now=utcnow())
        enrollment.decide(
            db.session, program, s.affiliate.id, "approve", actor_id=s.admin.id, reason=None, now=utcnow()
        )
        db.session.commit()
    try:
        shopper.get(f"/r/{s.link.code}", headers={"User-Agent": CHROME})
    finally:
        fresh.close()
    before, after = all_clicks(app)
    assert before.fraud_action == "reject" and "not enrolled in the program" in before.fraud_reasons
    assert after.fraud_action != "reject" and "affiliate_not_enrolled" not in (after.fraud_reasons or "")


def test_deep_links_and_the_visitor_cookie(app, shopper):
    s = setup_link(app, deep_link="/products/42?colour=red")
    first = shopper.get(f"/r/{s.link.code}", headers={"User-Agent": CHROME})
    assert first.headers["Location"].startswith("https://shop.example.com/products/42?colour=red&ct_click=")
    second = shopper.get(f"/r/{s.link.code}", headers={"User-Agent": CHROME})
    assert not any(h.startswith("ct_vid=") for h in second.headers.getlist("Set-Cookie")), "visitor cookie kept"
    clicks = all_clicks(app)
    assert clicks[0].visitor_id == clicks[1].visitor_id


@pytest.mark.parametrize("cookie", ["ct_vid=short", "ct_vid=" + "A" * 5000, "ct_vid=abc;;;==", "garbage\x00=\x01"])
def test_tampered_or_oversized_cookies_get_a_fresh_visitor_id(app, redirector, cookie):
    s = setup_link(app)
    response = Visitor(redirector).get(f"/r/{s.link.code}", headers={"Cookie": cookie, "User-Agent": CHROME})
    assert response.status_code == 302
    [click] = all_clicks(app)
    assert len(click.visitor_id) == 32 and click.visitor_id != "short"


def test_other_methods_get_clear_answers_and_record_nothing(app, shopper):
    s = setup_link(app)
    assert shopper.post(f"/r/{s.link.code}").status_code == 405
    assert shopper.put(f"/r/{s.link.code}").status_code == 405
    options = shopper.options(f"/r/{s.link.code}")
    assert options.status_code == 204 and "GET" in options.headers["Allow"]
    assert shopper.get("/r/a%0d%0aSet-Cookie:x=1").status_code == 400
    assert shopper.get("/r/" + "a" * 10_000).status_code == 404
    assert all_clicks(app) == []
