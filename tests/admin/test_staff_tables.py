"""The staff tables people search and sort: affiliates found by name, email or referral code, conversions by
affiliate name and order id, column headers that order the rows and keep the filters, bad values said, not 500."""

from __future__ import annotations

import re
from datetime import timedelta

from affiliate.extensions import db
from affiliate.models import Conversion, User, utcnow
from tests.factories import Auth, make_admin, make_affiliate, make_finance, make_program
from tests.money.test_accrual import report


def signed_in(app, user):
    client = app.test_client()
    assert Auth(client).login(user.email).status_code == 302
    return client


def order_of(page: str, names: list[str]) -> list[str]:
    """``names`` in the order the page shows them."""
    return sorted(names, key=page.index)


def referral_code(app, user) -> str:
    with app.app_context():
        return db.session.get(User, user.id).referral_code


def test_affiliates_are_found_by_name_email_or_referral_code_and_sorted_by_a_header(app):
    admin = make_admin(app)
    make_affiliate(app, name="Zoe Quartz", email="zoe@quartz.example")
    make_affiliate(app, name="Adam Brook", email="adam@brook.example")
    mia = make_affiliate(app, name="Mia Marsh", email="mia@marsh.example")
    client = signed_in(app, admin)

    found = client.get("/admin/affiliates/?status=all&q=QUARTZ").get_data(as_text=True)
    assert "Zoe Quartz" in found and "Adam Brook" not in found, "by part of the name or email, any case"
    code = referral_code(app, mia)
    by_code = client.get(f"/admin/affiliates/?status=all&q={code.lower()}").get_data(as_text=True)
    assert "Mia Marsh" in by_code and "Zoe Quartz" not in by_code, "by referral code"

    by_name = client.get("/admin/affiliates/?status=all&sort=name&dir=asc").get_data(as_text=True)
    assert order_of(by_name, ["Zoe Quartz", "Adam Brook", "Mia Marsh"]) == ["Adam Brook", "Mia Marsh", "Zoe Quartz"]
    assert re.search(r'<th scope="col" aria-sort="ascending">\s*<a href="[^"]*sort=name&amp;dir=desc', by_name), (
        "the sorted header says so, and links to the other direction"
    )
    assert "▲" in by_name
    backwards = client.get("/admin/affiliates/?status=all&sort=name&dir=desc").get_data(as_text=True)
    assert order_of(backwards, ["Zoe Quartz", "Adam Brook", "Mia Marsh"]) == ["Zoe Quartz", "Mia Marsh", "Adam Brook"]
    assert 'aria-sort="descending"' in backwards

    searched = client.get("/admin/affiliates/?status=all&q=example&sort=email&dir=asc").get_data(as_text=True)
    header = re.search(r'href="(/admin/affiliates/\?[^"]*sort=name[^"]*)"', searched).group(1)
    assert "q=example" in header and "status=all" in header and "page=" not in header, "the header keeps the search"

    for hostile in ("sort=password_hash&dir=asc", "sort=name&dir=sideways", "sort=&dir=", "sort=name;drop"):
        assert client.get(f"/admin/affiliates/?status=all&{hostile}").status_code == 200, hostile


def _conversions(app):
    admin = make_admin(app)
    shoes, hats = make_program(app, admin, name="Shoe Shop"), make_program(app, admin, name="Hat Hut")
    ada, bea = make_affiliate(app, name="Ada Lovelace"), make_affiliate(app, name="Bea Bright")
    report(app, shoes, ada.id, "ORD-1001", 5_000, customer_email="kim@shopper.example")
    report(app, shoes, bea.id, "ORD-2002", 90_000, customer_external_id="cus_77")
    report(app, hats, ada.id, "HAT-3003", 1_000)
    return admin, shoes, hats, ada, bea


def test_conversions_are_found_by_affiliate_name_and_order_id_and_show_what_people_look_for(app):
    _, shoes, _, ada, _ = _conversions(app)
    client = signed_in(app, make_finance(app))

    by_name = client.get("/admin/conversions/?affiliate=lovelace").get_data(as_text=True)
    assert "ORD-1001" in by_name and "HAT-3003" in by_name and "ORD-2002" not in by_name
    assert f'href="/admin/affiliates/{ada.id}">Ada Lovelace</a>' in by_name, "the affiliate links to their page"
    assert "kim@shopper.example" in by_name and "Shoe Shop" in by_name and "$50.00" in by_name
    by_id = client.get(f"/admin/conversions/?affiliate={ada.id}").get_data(as_text=True)
    assert "ORD-1001" in by_id and "ORD-2002" not in by_id, "an id from an old link still filters"
    by_order = client.get("/admin/conversions/?order=ord-2").get_data(as_text=True)
    assert "ORD-2002" in by_order and "ORD-1001" not in by_order and "cus_77" in by_order
    both = client.get(f"/admin/conversions/?program={shoes.id}&affiliate=ada").get_data(as_text=True)
    assert "ORD-1001" in both and "HAT-3003" not in both
    assert f'<option value="{shoes.id}" selected>Shoe Shop</option>' in both, "the program is chosen by name"


def test_sorting_conversions_changes_the_order_and_keeps_the_filters(app):
    _, shoes, _, _, _ = _conversions(app)
    client = signed_in(app, make_admin(app))
    largest = client.get("/admin/conversions/?sort=amount&dir=desc").get_data(as_text=True)
    assert order_of(largest, ["ORD-1001", "ORD-2002", "HAT-3003"]) == ["ORD-2002", "ORD-1001", "HAT-3003"]
    smallest = client.get("/admin/conversions/?sort=amount&dir=asc").get_data(as_text=True)
    assert order_of(smallest, ["ORD-1001", "ORD-2002", "HAT-3003"]) == ["HAT-3003", "ORD-1001", "ORD-2002"]

    filtered = client.get(f"/admin/conversions/?program={shoes.id}&status=pending&page=1").get_data(as_text=True)
    link = re.search(r'href="(/admin/conversions/\?[^"]*sort=amount[^"]*)"', filtered).group(1).replace("&amp;", "&")
    assert f"program={shoes.id}" in link and "status=pending" in link and "page=" not in link
    followed = client.get(link).get_data(as_text=True)
    assert "HAT-3003" not in followed and "ORD-2002" in followed, "the sorted list is still filtered"


def test_dates_narrow_the_list_and_bad_ones_are_said_not_a_server_error(app):
    admin, shoes, _, ada, _ = _conversions(app)
    with app.app_context():
        old = report(app, shoes, ada.id, "OLD-9", 700)
        db.session.get(Conversion, old).occurred_at = utcnow() - timedelta(days=40)
        db.session.commit()
    client = signed_in(app, admin)
    start = (utcnow() - timedelta(days=2)).date().isoformat()
    recent = client.get(f"/admin/conversions/?start={start}").get_data(as_text=True)
    assert "ORD-1001" in recent and "OLD-9" not in recent
    end = (utcnow() - timedelta(days=30)).date().isoformat()
    older = client.get(f"/admin/conversions/?end={end}").get_data(as_text=True)
    assert "OLD-9" in older and "ORD-1001" not in older
    for bad, said in (("start=31/12/2026", "enter a date as YYYY-MM-DD"), ("end=2026-02-30", "not a date")):
        response = client.get(f"/admin/conversions/?{bad}")
        assert response.status_code == 200 and said in response.get_data(as_text=True), bad
        assert "OLD-9" in response.get_data(as_text=True), "the bad date is left out"
    backwards = client.get("/admin/conversions/?start=2026-05-01&end=2026-04-01").get_data(as_text=True)
    assert "ends before it starts" in backwards
    assert client.get("/admin/conversions/?start=0001-01-01&end=9999-12-31").status_code == 200
