"""The program's commission plan, for admins: the version in force, every earlier version, a new version, a preview.

A change is always a new version (affiliate/services/plans.py), in force from the moment it is saved or a
chosen later moment; commissions already accrued never change. The preview comes from the same
``commissions.evaluate`` the money job pays with.

Why one module: one blueprint (docs/layout.md), and the plan form, its parsing into terms and its preview are
the one page an admin edits a plan on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from wtforms import Form, FormField, IntegerField, SelectField, StringField, SubmitField
from wtforms.validators import InputRequired, NumberRange, ValidationError

from affiliate.auth.access import require_roles
from affiliate.extensions import db
from affiliate.forms import Form as PortalForm
from affiliate.forms import RowList
from affiliate.models import CommissionPlan, PartnerGroup, Program, Role, User, in_utc, utcnow
from affiliate.money import InvalidAmount, format_amount, parse_amount, plain_amount
from affiliate.params import parse_id
from affiliate.services import commissions, people
from affiliate.services.commissions import COUNT, MARGINAL, REVENUE, WHOLE_PERIOD, PlanTerms, TierRate
from affiliate.services.plans import MAX_TIERS, PlanError, bps_to_percent, in_words, save_plan
from affiliate.services.standing import plan_in_force, terms_of
from affiliate.validators import options

bp = Blueprint("admin_plans", __name__, url_prefix="/admin/programs/<int:program_id>/plan")
bp.before_request(require_roles(Role.ADMIN))

TIER_ROWS = 5  # empty rows offered for a plan's tiers; a version with more shows each of them, up to MAX_TIERS
RECURRING = [
    ("first", "First sale only"),
    ("months", "For a number of months"),
    ("life", "For the customer's lifetime"),
]


def percent_to_bps(text: str) -> int:
    """'12.5' or '12.5%' as basis points; at most two decimals, between 0 and 100."""
    cleaned = (text or "").strip().rstrip("%").strip() or "0"
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError("Write a percentage such as 10 or 12.5.") from None
    if not value.is_finite() or value.as_tuple().exponent < -2:
        raise ValueError("Write a percentage such as 10 or 12.5 (at most two decimals).")
    if not 0 <= value <= 100:
        raise ValueError("A percentage is between 0 and 100.")
    return int(value * 100)


class TierForm(Form):
    threshold = StringField("From")
    percent = StringField("Percent")
    flat = StringField("Flat")


class PlanForm(PortalForm):
    flat = StringField("Flat amount per conversion", default="0")
    percent = StringField("Percent of each sale", default="0", description="e.g. 10 or 12.5")
    tier_basis = SelectField(
        "Tiers count", choices=options([(COUNT, "Conversions in the month"), (REVENUE, "Revenue in the month")])
    )
    tier_scope = SelectField(
        "A reached tier pays",
        choices=options(
            [
                (WHOLE_PERIOD, "The whole month (earlier conversions are raised to it)"),
                (MARGINAL, "Only what lies beyond its threshold"),
            ]
        ),
    )
    tiers = RowList(FormField(TierForm), min_entries=TIER_ROWS, max_entries=MAX_TIERS)
    second_tier = StringField("Second tier for the recruiter (percent of the commission)", default="0")
    recurring = SelectField("Repeat sales of a customer earn", choices=options(RECURRING))
    recurring_months = StringField("Months")
    referrer_reward = StringField("Refer-a-friend: reward to the referrer", default="0")
    referee_reward = StringField("Refer-a-friend: reward to the new member", default="0")
    bonus = StringField(
        "Performance bonus",
        default="0",
        description="Paid once a month, on the sale that brings the month to the threshold below. 0 for no bonus.",
    )
    bonus_threshold = StringField(
        "Bonus threshold",
        description="Sales in the month when tiers count conversions, or revenue in the month when they count "
        "revenue (say 20, or 5000.00). Empty for no bonus.",
    )
    effective_from = StringField(
        "In force from (UTC)",
        description="Leave empty for now, or a later moment as 2027-01-01 or 2027-01-01 09:00.",
    )
    preview_amount = StringField("Sale amount", default="120.00")
    preview_count = IntegerField(
        "Sales so far this month",
        default=12,
        validators=[InputRequired(), NumberRange(min=0, max=10_000, message="Between 0 and 10,000 sales.")],
    )
    preview_revenue = StringField("Revenue so far this month", default="1000.00")
    preview = SubmitField("Preview")
    save = SubmitField("Save as a new version")

    def __init__(self, currency: str, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.currency = currency

    def money(self, field) -> int:
        try:
            return parse_amount(field.data or "0", self.currency)
        except InvalidAmount as error:
            raise ValidationError(str(error)) from None

    def bps(self, field) -> int:
        try:
            return percent_to_bps(field.data)
        except ValueError as error:
            raise ValidationError(str(error)) from None

    def validate_flat(self, field) -> None:
        self.flat_cents = self.money(field)

    def validate_percent(self, field) -> None:
        self.percent_bps = self.bps(field)

    def validate_second_tier(self, field) -> None:
        self.second_tier_bps = self.bps(field)

    def validate_referrer_reward(self, field) -> None:
        self.referrer_reward_cents = self.money(field)

    def validate_referee_reward(self, field) -> None:
        self.referee_reward_cents = self.money(field)

    def validate_bonus(self, field) -> None:
        self.bonus_cents = self.money(field)

    def validate_bonus_threshold(self, field) -> None:
        self.bonus_at = None
        text = (field.data or "").strip()
        bonus = getattr(self, "bonus_cents", 0)
        if not text:
            if bonus:
                raise ValidationError("Say at what volume in a month the bonus is paid, or set the bonus to 0.")
            return
        if self.tier_basis.data == REVENUE:
            at = self.money(field)
        elif text.isascii() and text.isdigit() and len(text) <= 18:
            at = int(text)
        else:
            raise ValidationError("When tiers count conversions, the bonus starts at a whole number of sales.")
        if at < 1:
            raise ValidationError("The bonus threshold is at least 1.")
        if not bonus and not self.bonus.errors:
            raise ValidationError("Give the bonus an amount, or leave its threshold empty.")
        self.bonus_at = at

    def validate_recurring_months(self, field) -> None:
        self.months = None
        if self.recurring.data != "months":
            return
        text = (field.data or "").strip()
        if not text:
            raise ValidationError("Say for how many months repeat sales earn.")
        if not (text.isascii() and text.isdigit() and len(text) <= 6) or not 1 <= int(text) <= 1200:
            raise ValidationError("Between 1 and 1,200 months.")
        self.months = int(text)

    def validate_preview_amount(self, field) -> None:
        self.preview_amount_cents = self.money(field)

    def validate_preview_revenue(self, field) -> None:
        self.preview_revenue_cents = self.money(field)

    def validate_effective_from(self, field) -> None:
        self.effective_at = None
        text = (field.data or "").strip()
        if not text:
            return
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValidationError("Write a moment as 2027-01-01 or 2027-01-01 09:00 (UTC).") from None
        try:
            self.effective_at = moment.replace(tzinfo=UTC) if moment.tzinfo is None else in_utc(moment)
        except ValueError as error:
            raise ValidationError(f"That moment is {error}.") from None

    def validate_tiers(self, field) -> None:
        self.tier_rates = []
        errors = []
        for row in field.entries:
            threshold = (row.form.threshold.data or "").strip()
            percent, flat = row.form.percent.data, row.form.flat.data
            if not threshold and not (percent or "").strip() and not (flat or "").strip():
                continue
            try:
                if self.tier_basis.data == REVENUE:
                    at = parse_amount(threshold, self.currency)
                else:
                    if not (threshold.isascii() and threshold.isdigit() and len(threshold) <= 18):
                        raise ValueError("A tier starts at a whole number of conversions.")
                    at = int(threshold)
                if at < 1:
                    raise ValueError("A tier starts at 1 or more.")
                self.tier_rates.append(TierRate(at, percent_to_bps(percent), parse_amount(flat or "0", self.currency)))
            except (ValueError, InvalidAmount) as error:
                errors.append(str(error))
        if errors:
            raise ValidationError(" ".join(dict.fromkeys(errors)))
        if len({tier.threshold for tier in self.tier_rates}) != len(self.tier_rates):
            raise ValidationError("Two tiers cannot start at the same threshold.")

    def terms(self) -> PlanTerms:
        months = {"first": 0, "life": None}.get(self.recurring.data, self.months)
        return PlanTerms(
            flat_cents=self.flat_cents,
            percent_bps=self.percent_bps,
            tier_basis=self.tier_basis.data,
            tier_scope=self.tier_scope.data,
            tiers=tuple(sorted(self.tier_rates, key=lambda tier: tier.threshold)),
            second_tier_bps=self.second_tier_bps,
            recurring_months=months,
            referrer_reward_cents=self.referrer_reward_cents,
            referee_reward_cents=self.referee_reward_cents,
            bonus_threshold=self.bonus_at,
            bonus_cents=self.bonus_cents if self.bonus_at is not None else 0,
        )

    def fill(self, terms: PlanTerms) -> None:
        """Show a version's terms in the form (for the next version to start from)."""
        self.flat.data = plain_amount(terms.flat_cents, self.currency)
        self.percent.data = bps_to_percent(terms.percent_bps)
        self.tier_basis.data, self.tier_scope.data = terms.tier_basis, terms.tier_scope
        # Every tier of the version gets a row, and one more is left empty: a version saved through the API with
        # more tiers than the form offers would otherwise lose the rest at the next save.
        while len(self.tiers.entries) < min(len(terms.tiers) + 1, MAX_TIERS):
            self.tiers.append_entry()
        for row, tier in zip(self.tiers.entries, terms.tiers, strict=False):
            row.form.threshold.data = (
                plain_amount(tier.threshold, self.currency) if terms.tier_basis == REVENUE else str(tier.threshold)
            )
            row.form.percent.data = bps_to_percent(tier.percent_bps)
            row.form.flat.data = plain_amount(tier.flat_cents, self.currency)
        self.second_tier.data = bps_to_percent(terms.second_tier_bps)
        if terms.recurring_months is None:
            self.recurring.data = "life"
        elif terms.recurring_months == 0:
            self.recurring.data = "first"
        else:
            self.recurring.data, self.recurring_months.data = "months", str(terms.recurring_months)
        self.referrer_reward.data = plain_amount(terms.referrer_reward_cents, self.currency)
        self.referee_reward.data = plain_amount(terms.referee_reward_cents, self.currency)
        self.bonus.data = plain_amount(terms.bonus_cents, self.currency)
        if terms.bonus_threshold is None:
            self.bonus_threshold.data = ""
        elif terms.tier_basis == REVENUE:
            self.bonus_threshold.data = plain_amount(terms.bonus_threshold, self.currency)
        else:
            self.bonus_threshold.data = str(terms.bonus_threshold)


def preview(terms: PlanTerms, amount: int, count: int, revenue: int, currency: str) -> str:
    """What one more sale earns its affiliate under ``terms``, in a sentence."""
    shares = commissions.split(revenue, [1] * count) if count else []
    period = [commissions.Counted(n, share, share, 0) for n, share in enumerate(shares)]
    if terms.tier_basis == REVENUE and not count and revenue:
        period = [commissions.Counted(0, revenue, revenue, 0)]
    lines = commissions.evaluate(
        commissions.PaidConversion("sale", amount), terms, period, money=lambda cents: format_amount(cents, currency)
    )
    own = sum(line.amount_cents for line in lines if line.kind == "earning")
    rule = next((line.rule for line in lines if line.kind == "earning"), "nothing")
    sentence = (
        f"A {format_amount(amount, currency)} sale by an affiliate with {count} sale{'s' if count != 1 else ''} "
        f"({format_amount(revenue, currency)}) this month earns {format_amount(own, currency)} ({rule})."
    )
    if terms.second_tier_bps:
        second = commissions.percent_of(own, terms.second_tier_bps)
        sentence += f" Their recruiter earns {format_amount(second, currency)}."
    bonus = sum(line.amount_cents for line in lines if line.kind == "performance_bonus")
    if bonus:
        sentence += f" It reaches the month's bonus threshold: {format_amount(bonus, currency)} more."
    return sentence


@dataclass(frozen=True)
class Scope:
    """Whose plan the page edits: the program's (default group), a named group's, or one affiliate's."""

    group: PartnerGroup | None = None
    affiliate: User | None = None

    @property
    def args(self) -> dict[str, int]:
        if self.group is not None:
            return {"group": self.group.id}
        return {"affiliate": self.affiliate.id} if self.affiliate is not None else {}

    def owns(self):
        group_id = self.group.id if self.group is not None else None
        affiliate_id = self.affiliate.id if self.affiliate is not None else None
        return (
            CommissionPlan.group_id.is_(None) if group_id is None else CommissionPlan.group_id == group_id,
            CommissionPlan.affiliate_id.is_(None)
            if affiliate_id is None
            else CommissionPlan.affiliate_id == affiliate_id,
        )

    def label(self) -> str:
        if self.group is not None:
            return f"{self.group.name} group"
        if self.affiliate is not None:
            return f"override for {self.affiliate.name}"
        return "default group"


def _scope(program: Program) -> Scope:
    group_id, affiliate_id = _row_id("group"), _row_id("affiliate")
    if group_id is not None:
        group = db.session.get(PartnerGroup, group_id)
        if group is None or group.program_id != program.id:
            abort(404)
        return Scope(group=group)
    if affiliate_id is not None:
        return Scope(affiliate=people.affiliate(db.session, affiliate_id) or abort(404))
    return Scope()


def _row_id(name: str) -> int | None:
    text = request.args.get(name)
    if text is None:
        return None
    return parse_id(text) or abort(404)


@bp.route("/", methods=["GET", "POST"])
def edit(program_id: int):
    program = db.session.get(Program, program_id) or abort(404)
    scope = _scope(program)
    form = PlanForm(program.currency)
    now = utcnow()
    current = db.session.scalar(
        select(CommissionPlan)
        .where(CommissionPlan.program_id == program.id, *scope.owns(), CommissionPlan.effective_from <= now)
        .order_by(CommissionPlan.effective_from.desc(), CommissionPlan.id.desc())
        .limit(1)
    )
    fallback = None
    if current is None and (scope.group or scope.affiliate):
        affiliate_id = scope.affiliate.id if scope.affiliate else None
        fallback = plan_in_force(db.session, program.id, affiliate_id, now)
    if not form.is_submitted():
        form.fill(terms_of(current or fallback))
    result = None
    if form.validate_on_submit():
        terms = form.terms()
        if form.save.data:
            try:
                plan = save_plan(
                    db.session,
                    program.id,
                    terms,
                    effective_from=form.effective_at or now,
                    actor_id=current_user.id,
                    now=now,
                    group_id=scope.group.id if scope.group else None,
                    affiliate_id=scope.affiliate.id if scope.affiliate else None,
                    currency=form.currency,
                )
            except PlanError as error:
                db.session.rollback()
                form.form_errors.append(str(error))
            else:
                db.session.commit()
                flash(
                    f"Plan version {plan.id} for the {scope.label()} saved; it pays conversions from "
                    f"{plan.effective_from:%Y-%m-%d %H:%M} UTC on.",
                    "success",
                )
                return redirect(url_for("admin_plans.edit", program_id=program.id, **scope.args))
        else:
            result = preview(
                terms, form.preview_amount_cents, form.preview_count.data, form.preview_revenue_cents, program.currency
            )
    versions = db.session.execute(
        select(CommissionPlan, User.name)
        .outerjoin(User, User.id == CommissionPlan.created_by_id)
        .where(CommissionPlan.program_id == program.id, *scope.owns())
        .order_by(CommissionPlan.effective_from.desc(), CommissionPlan.id.desc())
    ).all()
    status = 200 if request.method == "GET" or not form.errors else 422
    return render_template(
        "admin/plans/edit.html",
        program=program,
        form=form,
        current=current,
        fallback=fallback,
        versions=versions,
        describe=in_words,
        terms_of=terms_of,
        result=result,
        now=now,
        scope=scope,
    ), status
