"""The demo shop's checkout against a live server: the redirector, the shop and the real conversion API.

Clicktrail runs under granian as `make run` starts it (portal and redirector in one app, PUBLIC_BASE_URL
its own address, ALLOW_HTTP_LOOPBACK_DESTINATIONS on); the shop's back end posts the signed sale to it
over HTTP. The shopper is a plain HTTP client: where ct.js would fill the form's click id in a browser,
it fills it from the landing URL (tests/browser/test_demo_shop.py runs the real snippet).
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from affiliate.extensions import db
from affiliate.models import ApiKey, Click, Conversion, User, utcnow
from affiliate.services.api_keys import revoke_key
from tests.demo_shop.helpers import Page, Shopper, click_id_of, give_shop_credentials
from tests.factories import make_admin, make_affiliate, make_link, make_program
from tests.redirector.helpers import wait_for_click
from tests.servers import Server


@pytest.fixture
def server(app, database_uri, tmp_path):
    server = Server(
        database_uri, tmp_path, workers=1, interface="wsgi", target="wsgi:app", ALLOW_HTTP_LOOPBACK_DESTINATIONS="1"
    )
    yield server
    server.stop()


def checkout(shopper: Shopper, path: str, product: str, email: str, click_id: str = "") -> tuple[dict, Page]:
    """Open the checkout page and place the order as a browser with ct.js would; return the form and the answer."""
    page = shopper.get(path)
    assert page.status == 200
    form = {
        "csrf_token": page.hidden("csrf_token"),
        "order_id": page.hidden("order_id"),
        "product": product,
        "email": email,
        "click_id": click_id or page.hidden("click_id"),
    }
    return form, shopper.post("/demo-shop/checkout", form)


def sales(app, order_id: str) -> list[Conversion]:
    with app.app_context():
        rows = db.session.scalars(select(Conversion).where(Conversion.order_id == order_id)).all()
        for row in rows:
            db.session.expunge(row)
    return rows


def test_click_then_checkout_is_a_sale_credited_to_the_links_affiliate_once(app, server, tmp_path):
    admin = make_admin(app)
    program = make_program(app, admin, destination_url=f"{server.url}/demo-shop/", allowed_hosts=())
    alice = make_affiliate(app, name="Alice Affiliate")
    link = make_link(app, alice, program, campaign="Blog")
    give_shop_credentials(app, program, tmp_path, admin)

    # 1. The shopper clicks Alice's link; the redirector sends them to the shop with the click id.
    shopper = Shopper(server.url)
    redirect = shopper.get(f"/r/{link.code}")
    assert redirect.status == 302
    location = redirect.headers["Location"]
    assert location.startswith(f"{server.url}/demo-shop/?ct_click=")
    click_id = click_id_of(location)
    landing = shopper.get(location)
    assert landing.status == 200 and "Demo merchant." in landing.text
    assert f"/signup?program={program.id}&amp;ct_click={click_id}" in landing.text

    # 2. They buy the knife (a shopper takes seconds, in which the click is stored even on a loaded machine):
    # the shop's server reports the sale, signed, and shows what Clicktrail answered.
    wait_for_click(app, click_id)
    form, placed = checkout(shopper, "/demo-shop/checkout?product=knife", "knife", "sam@example.com", click_id)
    assert placed.status == 200, placed.main
    assert "Order placed." in placed.main
    assert "Credited to the partner who referred you" in placed.main and click_id in placed.main
    assert "You came through the partner" in placed.main and "affiliate #" not in placed.main
    [sale] = sales(app, form["order_id"])
    with app.app_context():
        stored_click = db.session.scalar(select(Click.click_id).where(Click.id == sale.click_id))
    assert (sale.type, sale.amount_cents, sale.currency, sale.affiliate_id) == ("sale", 8900, "USD", alice.id)
    assert (sale.customer_email, stored_click) == ("sam@example.com", click_id)
    assert sale.customer_external_id.startswith("shop-")
    assert f"Conversion #{sale.id}" in placed.main

    # 3. Sending the same page again (a double click, a reload) is the same order: no second sale.
    again = shopper.post("/demo-shop/checkout", form)
    assert again.status == 200 and "This order was placed before." in again.main
    assert f"Conversion #{sale.id}" in again.main
    assert [row.id for row in sales(app, form["order_id"])] == [sale.id]

    # 4. The same order with another product is refused, clearly, and changes nothing.
    changed = shopper.post("/demo-shop/checkout", {**form, "product": "kettle"})
    assert changed.status == 409 and "Your order was not placed." in changed.main
    assert "idempotency_conflict" in changed.main
    assert [(row.id, row.amount_cents) for row in sales(app, form["order_id"])] == [(sale.id, 8900)]

    # 5. A shopper who came by no tracked link buys too: recorded, credited to nobody.
    walk_in = Shopper(server.url)
    form, placed = checkout(walk_in, "/demo-shop/checkout", "cookbook", "walk-in@example.com")
    assert placed.status == 200 and "Credited to no partner" in placed.main
    assert "You did not come through a partner" in placed.main
    [unattributed] = sales(app, form["order_id"])
    assert (unattributed.amount_cents, unattributed.affiliate_id) == (2999, None)

    # 6. The shop's key is revoked: the API refuses the sale, and the shop says so instead of failing.
    with app.app_context():
        key = db.session.scalar(select(ApiKey).where(ApiKey.program_id == program.id))
        revoke_key(db.session, key, actor=db.session.get(User, admin.id), now=utcnow())
        db.session.commit()
    form, refused = checkout(shopper, "/demo-shop/checkout", "kettle", "sam@example.com")
    assert refused.status == 502 and "invalid_api_key" in refused.main
    assert sales(app, form["order_id"]) == []
