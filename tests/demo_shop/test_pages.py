"""The demo shop's pages, and its checkout when the conversion API is down, slow or not set up.

The shop's checkout posts to PUBLIC_BASE_URL over real HTTP; here that address is a closed port or a
socket that never answers, so the API is down for real. test_checkout.py runs it against a live server.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from affiliate.demo_shop.credentials import credentials_path
from affiliate.extensions import db
from affiliate.ids import new_id
from affiliate.models import Conversion
from tests.conftest import build_app, dispose
from tests.demo_shop.helpers import give_shop_credentials
from tests.factories import csrf_token, make_admin, make_program


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_api() -> Iterator[int]:
    """A port that takes connections and never answers them."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def shop_app(database_uri: str, port: int, **overrides):
    return build_app(
        database_uri, PUBLIC_BASE_URL=f"http://127.0.0.1:{port}", DEMO_SHOP_API_TIMEOUT_SECONDS=1, **overrides
    )


@pytest.fixture
def offline(database_uri):
    """The portal with the demo shop, whose conversion API address nothing listens on."""
    app = shop_app(database_uri, closed_port())
    yield app
    dispose(app)


def program_with_shop(app):
    admin = make_admin(app)
    program = make_program(app, admin)
    give_shop_credentials(app, program, app.config["INSTANCE_PATH"], admin)
    return program


def order_form(client, path: str = "/demo-shop/checkout?product=knife") -> dict:
    html = client.get(path).get_data(as_text=True)
    order_id = re.search(r'name="order_id" type="hidden" value="([^"]*)"', html).group(1)
    return {"csrf_token": csrf_token(html), "order_id": order_id, "product": "knife", "email": "sam@example.com"}


def conversions(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Conversion))


def test_landing_says_it_is_a_demo_and_carries_the_click_to_the_hosted_signup(offline):
    program = program_with_shop(offline)
    client = offline.test_client()
    click_id = new_id()
    page = client.get(f"/demo-shop/?ct_click={click_id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Demo merchant." in html and "no payment is taken" in html
    assert '<script src="/static/ct.js" data-cookie-days="30" defer></script>' in html
    assert 'data-clicktrail="click_id"' in html
    assert "$49.99" in html and "$89.00" in html and 'href="/demo-shop/checkout?product=knife"' in html
    signup = re.search(r'id="signup" class="button secondary" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert signup == f"/signup?program={program.id}&ct_click={click_id}"
    assert client.get(signup).status_code == 200
    # A malformed click id is not passed on; ct.js's first-party cookie is.
    assert (
        "ct_click="
        not in client.get("/demo-shop/?ct_click=%3Cscript%3E").get_data(as_text=True).split('id="signup"')[1][:80]
    )
    client.set_cookie("ct_click", click_id)
    assert f"ct_click={click_id}" in client.get("/demo-shop/").get_data(as_text=True)


def test_checkout_page_keeps_the_click_from_the_url_or_the_snippets_cookie(offline):
    program_with_shop(offline)
    client = offline.test_client()
    from_url, from_cookie = new_id(), new_id()
    html = client.get(f"/demo-shop/checkout?product=cookbook&ct_click={from_url}").get_data(as_text=True)
    assert f'name="click_id" type="hidden" value="{from_url}"' in html
    assert 'data-clicktrail="click_id"' in html and '<option selected value="cookbook">' in html
    client.set_cookie("ct_click", from_cookie)
    again = client.get("/demo-shop/checkout").get_data(as_text=True)
    assert f'name="click_id" type="hidden" value="{from_cookie}"' in again
    orders = set(re.findall(r'name="order_id" type="hidden" value="(SHOP-[0-9a-f]{16})"', html + again))
    assert len(orders) == 2, "every checkout page is a new order"


def test_without_credentials_the_shop_says_how_to_set_it_up_and_reports_nothing(offline):
    client = offline.test_client()
    assert "run `flask --app wsgi seed-demo`" in client.get("/demo-shop/").get_data(as_text=True)
    refused = client.post("/demo-shop/checkout", data=order_form(client))
    assert refused.status_code == 503 and "cannot report orders yet" in refused.get_data(as_text=True)

    program_with_shop(offline)
    path = credentials_path(offline.config["INSTANCE_PATH"])
    assert path.stat().st_mode & 0o777 == 0o600
    os.chmod(path, 0o644)  # an API key others could read is not used
    page = client.get("/demo-shop/").get_data(as_text=True)
    assert f"run `chmod 600 {path}`" in page
    assert client.post("/demo-shop/checkout", data=order_form(client)).status_code == 503
    assert conversions(offline) == 0


def test_api_down_is_a_clear_message_and_the_order_can_be_sent_again(offline):
    program_with_shop(offline)
    client = offline.test_client()
    form = order_form(client)
    response = client.post("/demo-shop/checkout", data=form)
    html = response.get_data(as_text=True)
    assert response.status_code == 502
    assert "Your order was not placed." in html and "could not be reached: Connection refused." in html
    assert "Traceback" not in html
    # The same order, ready to send again: a retry can never become a second sale.
    assert f'name="order_id" type="hidden" value="{form["order_id"]}"' in html
    assert conversions(offline) == 0


def test_api_that_does_not_answer_is_a_clear_message(database_uri, silent_api):
    app = shop_app(database_uri, silent_api)
    program_with_shop(app)
    client = app.test_client()
    response = client.post("/demo-shop/checkout", data=order_form(client))
    assert response.status_code == 504
    assert "did not answer within 1 s" in response.get_data(as_text=True)
    dispose(app)


def test_bad_checkout_forms_are_refused_before_anything_is_sent(offline):
    program_with_shop(offline)
    client = offline.test_client()
    form = order_form(client)
    for change, message in (
        ({"order_id": "DEMO-1000"}, "This checkout page is out of date."),
        ({"order_id": ""}, "This checkout page is out of date."),
        ({"product": "laptop"}, "Not a valid choice."),
        ({"email": "not an email"}, "Invalid email address."),
        ({"email": ""}, "This field is required."),
    ):
        response = client.post("/demo-shop/checkout", data={**form, **change})
        assert response.status_code == 200, change  # had it posted, the closed port would have made it a 502
        assert message in response.get_data(as_text=True), change
    without_token = {key: value for key, value in form.items() if key != "csrf_token"}
    assert client.post("/demo-shop/checkout", data=without_token).status_code == 400
    assert conversions(offline) == 0


def test_the_demo_shop_can_be_turned_off(database_uri):
    app = build_app(database_uri, DEMO_SHOP=False)
    client = app.test_client()
    assert client.get("/demo-shop/").status_code == 404
    assert client.get("/demo-shop/checkout").status_code == 404
    dispose(app)
