"""The demo `flask seed-demo` sets up: its people, program, plans, links and coupon (seeded by ``demo.seed``)."""

from __future__ import annotations

from affiliate.demo_shop.routes import LANDING_PATH
from affiliate.models import Role, UserStatus
from affiliate.models.programs import AttributionModel, ProgramStatus
from affiliate.services.commissions import REVENUE, WHOLE_PERIOD, PlanTerms, TierRate
from affiliate.services.programs import ProgramSettings

DEMO_PASSWORD = "clicktrail-demo"  # noqa: S105 - the documented demo password
DEMO_USERS = (
    ("Ada Admin", "admin@demo.clicktrail.example", Role.ADMIN, UserStatus.ACTIVE),
    ("Fiona Finance", "finance@demo.clicktrail.example", Role.FINANCE, UserStatus.ACTIVE),
    ("Felix Finance", "finance2@demo.clicktrail.example", Role.FINANCE, UserStatus.ACTIVE),
    ("Alice Affiliate", "alice@demo.clicktrail.example", Role.AFFILIATE, UserStatus.ACTIVE),
    ("Bob Blogger", "bob@demo.clicktrail.example", Role.AFFILIATE, UserStatus.ACTIVE),
    ("Carol Coupons", "carol@demo.clicktrail.example", Role.AFFILIATE, UserStatus.PENDING),
)
DEMO_CLICKS = 2500
# Alice recruited Bob and has payout details; Bob is in the VIP group.
DEMO_PARTNERS = ("alice@demo.clicktrail.example", "bob@demo.clicktrail.example")
DEMO_DEFAULT_PLAN = PlanTerms(percent_bps=1_000, second_tier_bps=500)
DEMO_VIP_PLAN = PlanTerms(
    percent_bps=1_000,
    tier_basis=REVENUE,
    tier_scope=WHOLE_PERIOD,
    tiers=(
        TierRate(threshold=30_000, percent_bps=1_200, flat_cents=0),
        TierRate(threshold=100_000, percent_bps=1_500, flat_cents=0),
    ),
    second_tier_bps=500,
)
SHOP_CHECKOUT = f"{LANDING_PATH}checkout?product="  # deep links into the demo shop
DEMO_LINKS = (
    ("alice@demo.clicktrail.example", "Newsletter", ("weekly", None, None, None, None), None),
    ("alice@demo.clicktrail.example", "Blog sidebar", ("sidebar", "v2", None, None, None), f"{SHOP_CHECKOUT}knife"),
    ("alice@demo.clicktrail.example", "Instagram bio", (None,) * 5, f"{SHOP_CHECKOUT}kettle"),
    ("bob@demo.clicktrail.example", "YouTube description", ("video-42", None, None, None, None), None),
    ("bob@demo.clicktrail.example", "Podcast", (None,) * 5, f"{SHOP_CHECKOUT}cookbook"),
)
# Without the demo shop (see demo_program_settings) the demo program points at this placeholder merchant.
DEMO_PROGRAM = ProgramSettings(
    name="Demo Store",
    description="Earn on every signup and sale you send to the Demo Store.",
    status=ProgramStatus.ACTIVE,
    destination_url="https://shop.example.com/signup",
    allowed_hosts=("shop.example.com", "www.example.com"),
    fallback_url="https://shop.example.com/",
    attribution_window_days=30,
    cookie_days=30,
    attribution_model=AttributionModel.LAST_CLICK,
    hold_days=7,  # most demo sales are past it, so there is money to pay out at once
    currency="USD",
    minimum_payout_cents=5000,
)
DEMO_SHOP_KEY_NAME = "Demo shop checkout"
DEMO_COUPON = ("bob@demo.clicktrail.example", "BOBSBLOG", "10% off your first order")
