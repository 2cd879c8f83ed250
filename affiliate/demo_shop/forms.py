"""The demo shop's checkout form."""

from __future__ import annotations

import re

from wtforms import EmailField, HiddenField, SelectField, StringField
from wtforms.validators import DataRequired, Email, Length, Optional, Regexp

from affiliate.demo_shop.catalogue import PRODUCTS
from affiliate.forms import Form
from affiliate.validators import options

ORDER_ID = re.compile(r"SHOP-[0-9a-f]{16}")


class CheckoutForm(Form):
    product = SelectField("Product", choices=options((product.slug, product.name) for product in PRODUCTS))
    email = EmailField("Email", validators=[DataRequired(), Email(check_deliverability=False), Length(max=254)])
    # Made when the page is shown, so submitting the same page again is the same order (never a second sale).
    order_id = HiddenField(validators=[DataRequired(), Regexp(ORDER_ID)])
    # Filled in by ct.js from the tracked link's ct_click (kept in its first-party cookie).
    click_id = HiddenField(render_kw={"data-clicktrail": "click_id"})
    # A code from a podcast or a newsletter: it credits its affiliate even without a click.
    coupon = StringField(
        "Coupon code",
        validators=[
            Optional(),
            Regexp(
                r"^[A-Za-z0-9_-]{3,40}$", message="A coupon code is 3 to 40 letters, digits, dashes or underscores."
            ),
        ],
    )
