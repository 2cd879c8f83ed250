"""The portal's shared frame: navigation per role with the current page marked, and the linked error summary."""

from __future__ import annotations

import re

from tests.factories import Auth, make_admin, make_affiliate, make_program

APPLICANT_NAV = ["Your application", "Account", "Sign out"]


def nav(html: str) -> list[str]:
    """The main navigation's link and button texts, in order."""
    block = re.search(r'<nav class="main-nav".*?</nav>', html, re.S).group(0)
    return [text.strip() for text in re.findall(r"<(?:a|button)\b[^>]*>([^<]+)</(?:a|button)>", block)]


def test_a_pending_applicant_sees_only_what_they_can_open(app, client):
    make_affiliate(app, email="pending@example.com", status="pending")
    Auth(client).login("pending@example.com")
    html = client.get("/account/application").get_data(as_text=True)
    assert nav(html) == APPLICANT_NAV
    assert '<a href="/account/application" aria-current="page">Your application</a>' in html
    for target in ("/account/application", "/account/"):
        assert client.get(target).status_code == 200, target


def test_an_approved_affiliate_sees_the_partner_pages_with_the_current_one_marked(app, client):
    make_affiliate(app, email="active@example.com")
    Auth(client).login("active@example.com")
    html = client.get("/partner/links/new").get_data(as_text=True)
    items = nav(html)
    assert items[:2] == ["Partner home", "Links"] and "Payout details" in items and "Your application" not in items
    # The links page's section is current (its new-link page), the home page is not.
    assert '<a href="/partner/links/" aria-current="true">Links</a>' in html
    assert '<a href="/partner/">Partner home</a>' in html
    assert html.count('aria-current="page"') == 0


def test_the_phone_menu_button_controls_the_navigation(app, client):
    html = client.get("/").get_data(as_text=True)
    button = '<button type="button" class="menu-button" aria-expanded="false" aria-controls="main-nav">Menu</button>'
    assert button in html
    assert '<nav class="main-nav" id="main-nav" aria-label="Main">' in html
    assert '<script src="/static/js/nav.js"></script>' in html


def test_field_errors_are_listed_at_the_top_each_linking_to_its_field(client):
    auth = Auth(client)
    response = auth.post("/apply", {"name": "", "email": "not-an-email", "password": "short", "confirm": "other"})
    html = response.get_data(as_text=True)
    summary = re.search(r'<div class="error-summary" role="alert" tabindex="-1".*?</div>', html, re.S).group(0)
    assert "There is a problem" in summary
    links = re.findall(r'<a href="#([a-z_]+)">([^<]+)</a>', summary)
    assert {target for target, _ in links} >= {"name", "email", "confirm", "promotion"}, links
    assert ("email", "Email: Invalid email address.") in links, links
    # The errors stay by their fields too, tied to the control.
    control = re.search(r'<input[^>]*id="email"[^>]*>', html).group(0)
    assert 'aria-invalid="true"' in control and 'aria-describedby="email-errors"' in control, control
    assert '<ul class="errors" id="email-errors">' in html


def test_a_rule_across_plan_rows_links_to_the_first_row(app, client):
    admin = make_admin(app)
    program = make_program(app, admin)
    auth = Auth(client)
    auth.login(admin.email)
    page = f"/admin/programs/{program.id}/plan/"
    data = {"percent": "10", "flat": "0", "tier_basis": "conversions", "tier_scope": "whole_period"}
    data |= {"tiers-0-threshold": "5", "tiers-0-percent": "12", "tiers-1-threshold": "5", "tiers-1-percent": "15"}
    html = auth.post(page, {**data, "save": "Save"}).get_data(as_text=True)
    summary = re.search(r'<div class="error-summary".*?</div>', html, re.S)
    assert summary, html[:2000]
    assert re.search(r'<a href="#tiers-0-[a-z_]+">[^<]*same threshold', summary.group(0)), summary.group(0)


def test_a_good_form_has_no_summary(client):
    assert "error-summary" not in client.get("/apply").get_data(as_text=True)


def test_a_report_with_nothing_in_it_says_so_instead_of_drawing_blank_charts(app, client):
    make_affiliate(app, email="new@example.com")
    Auth(client).login("new@example.com")
    html = client.get("/partner/reports/").get_data(as_text=True)
    assert "No clicks or conversions in these days" in html
    assert 'class="empty-state"' in html and 'href="/partner/links/"' in html
    assert "<svg" not in html and 'role="img"' not in html
