"""The demo merchant's pages: a landing page with the tracking snippet, and a checkout that reports the sale.

The shop behaves as a merchant's own site would: ct.js keeps the click id in a first-party cookie,
and the checkout is the merchant's back end, posting a signed sale to the conversion API over HTTP
at PUBLIC_BASE_URL with the demo program's API key (affiliate/demo_shop/credentials.py). It never
reads Clicktrail's database.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from flask import Blueprint, current_app, render_template, request, url_for

from affiliate.auth.sessions import token_or_none
from affiliate.demo_shop import merchant, reasons
from affiliate.demo_shop.catalogue import PRODUCTS, find_product
from affiliate.demo_shop.credentials import CredentialsMissing, ShopCredentials, credentials_path, load
from affiliate.demo_shop.forms import CheckoutForm
from affiliate.money import format_amount
from affiliate.validators import options

LANDING_PATH = "/demo-shop/"
SNIPPET_COOKIE = "ct_click"  # the first-party cookie ct.js keeps the click id in
VISITOR_COOKIE = "ct_vid"  # the redirector's visitor cookie; this shop shares Clicktrail's origin, so it sees it
DISPLAY_CURRENCY = "USD"  # prices are shown in this until the shop has credentials naming its program's currency

bp = Blueprint("demo_shop", __name__, url_prefix=LANDING_PATH.rstrip("/"))


@bp.route("/")
def landing():
    credentials, problem = _credentials()
    return render_template(
        "demo_shop/landing.html",
        products=PRODUCTS,
        currency=credentials.currency if credentials else DISPLAY_CURRENCY,
        signup_url=_signup_url(credentials, _click_id()),
        problem=problem,
    )


@bp.route("/checkout", methods=["GET", "POST"])
def checkout():
    credentials, problem = _credentials()
    currency = credentials.currency if credentials else DISPLAY_CURRENCY
    form = CheckoutForm()
    form.product.choices = options(
        (product.slug, f"{product.name}, {format_amount(product.price_cents, currency)}") for product in PRODUCTS
    )
    if not form.is_submitted():
        if find_product(request.args.get("product")):
            form.product.data = request.args["product"]
        form.order_id.data = f"SHOP-{secrets.token_hex(8)}"
        form.click_id.data = _click_id() or ""
    if not form.validate_on_submit():
        return render_template("demo_shop/checkout.html", form=form, problem=problem, failure=None)
    if credentials is None:
        return render_template("demo_shop/checkout.html", form=form, problem=problem, failure=None), 503
    product = find_product(form.product.data)
    email = form.email.data.strip()
    sale = merchant.Sale(
        order_id=form.order_id.data,
        product=product.slug,
        amount_cents=product.price_cents,
        currency=credentials.currency,
        customer_email=email,
        # The shop's own customer id; the same shopper keeps it, so recurring attribution can follow them.
        customer_external_id="shop-" + hashlib.sha256(email.lower().encode()).hexdigest()[:16],
        click_id=token_or_none(form.click_id.data) or _click_id(),
        visitor_id=token_or_none(request.cookies.get(VISITOR_COOKIE)),
        coupon=(form.coupon.data or "").strip() or None,
    )
    try:
        answer = merchant.report_sale(
            current_app.config["PUBLIC_BASE_URL"],
            credentials,
            sale,
            timestamp=int(time.time()),
            timeout=current_app.config["DEMO_SHOP_API_TIMEOUT_SECONDS"],
        )
    except merchant.ReportFailed as failure:
        # The same page (and order id) again, so trying once more cannot report the order twice.
        return render_template("demo_shop/checkout.html", form=form, problem=None, failure=failure), failure.status
    return render_template(
        "demo_shop/confirmation.html", sale=sale, product=product, answer=answer, explanation=reasons.explain(answer)
    )


def _credentials() -> tuple[ShopCredentials | None, str | None]:
    """The shop's credentials, or None and the reason it has none (shown on its pages)."""
    try:
        return load(credentials_path(current_app.config["INSTANCE_PATH"])), None
    except CredentialsMissing as missing:
        return None, str(missing)


def _click_id() -> str | None:
    """The click id of the tracked link the shopper arrived by: in the URL, else in ct.js's cookie."""
    return token_or_none(request.args.get(current_app.config["CLICK_PARAM"])) or token_or_none(
        request.cookies.get(SNIPPET_COOKIE)
    )


def _signup_url(credentials: ShopCredentials | None, click_id: str | None) -> str:
    """Clicktrail's hosted signup for the shop's program, carrying the click."""
    if credentials is None:
        return url_for("auth.signup")
    arguments = {"program": credentials.program_id}
    if click_id:
        arguments[current_app.config["CLICK_PARAM"]] = click_id
    return url_for("auth.signup", **arguments)
