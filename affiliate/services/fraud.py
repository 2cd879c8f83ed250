"""Fraud rules: plain, deterministic functions from facts and bounded history to a verdict.

A verdict is a score from 0 to 100, the rules that fired with their evidence, and an action.
Each rule has a per-program setting (see ``DEFAULT_RULES``): ``off`` (not evaluated),
``allow`` (evaluated and recorded, changes nothing), ``flag`` (waits for finance) or
``reject`` (never earns), a weight added to the score when it fires, and its thresholds.
The verdict's action is the most severe action among the rules that fired; its score is the
sum of their weights, capped at 100. The same facts and settings always give the same verdict.

Click verdicts decide which clicks count as human and which may win attribution; conversion
verdicts decide commissions (rejected earns nothing, flagged waits for review).

Why one module: ``NavigationHistory``, the evidence the cookie-stuffing rule reads for browsers that hide
user activation, stays beside that rule: its thresholds and its counting are one definition.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any

from disposable_email_domains import blocklist as DISPOSABLE_DOMAINS

# Ad networks' click ids. Not fbclid: Facebook adds it to every outbound link, organic posts included.
PAID_CLICK_PARAMS = ("gclid", "gbraid", "wbraid", "dclid", "msclkid", "ttclid", "twclid", "li_fat_id", "yclid", "epik",
                     "rdt_cid", "sccid")  # fmt: skip
# Browsers on WebKit send Sec-Fetch-Dest and -Mode but never Sec-Fetch-User, so its absence proves nothing there.
WEBKIT_BROWSERS = {"Safari", "Mobile Safari", "Mobile Safari UI/WKWebView"}
GMAIL_DOMAINS = {"gmail.com", "googlemail.com"}


class Action(StrEnum):
    OFF = "off"
    ALLOW = "allow"
    FLAG = "flag"
    REJECT = "reject"


SEVERITY = {Action.ALLOW: 0, Action.FLAG: 1, Action.REJECT: 2}


@dataclass(frozen=True)
class RuleSetting:
    """One rule's setting for one program."""

    rule: str
    action: Action
    weight: int
    settings: Mapping[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        return self.settings.get(name, DEFAULT_RULES[self.rule].settings.get(name))


# Rule name -> (what it judges, default setting). Thresholds are the defaults a program starts from.
DEFAULT_RULES: dict[str, RuleSetting] = {
    "bot": RuleSetting("bot", Action.REJECT, 100),
    "click_flooding": RuleSetting("click_flooding", Action.REJECT, 60, {"per_minute": 5, "per_hour": 30}),
    "duplicate_click": RuleSetting("duplicate_click", Action.ALLOW, 10),
    "cookie_stuffing": RuleSetting(
        "cookie_stuffing", Action.REJECT, 90, {"min_navigations": 5, "min_unactivated_share": 0.8}
    ),
    "self_referral": RuleSetting("self_referral", Action.REJECT, 90),
    "too_fast": RuleSetting("too_fast", Action.FLAG, 40, {"min_seconds": 10}),
    "click_spamming": RuleSetting(
        "click_spamming", Action.FLAG, 30, {"late_hours": 168, "max_late_share": 0.6, "min_conversions": 10}
    ),
    "existing_customer": RuleSetting("existing_customer", Action.OFF, 40),  # on for first-time-customer programs
    "disposable_email": RuleSetting("disposable_email", Action.FLAG, 50),
    "paid_traffic": RuleSetting("paid_traffic", Action.OFF, 50),
    "blocked_country": RuleSetting("blocked_country", Action.OFF, 80, {"countries": []}),
    "country_mismatch": RuleSetting("country_mismatch", Action.FLAG, 20),
    "conversion_rate_outlier": RuleSetting(
        "conversion_rate_outlier", Action.FLAG, 30, {"min_conversions": 10, "max_rate": 0.5}
    ),
    "shared_device": RuleSetting("shared_device", Action.FLAG, 40, {"max_conversions": 3, "hours": 24}),
    "coupon_leak": RuleSetting("coupon_leak", Action.FLAG, 30, {"min_conversions": 10, "max_share": 0.8, "days": 30}),
}
# What people read: each rule's name and what it checks, in one sentence that says what the code below counts.
LABELS = {
    "bot": "Bot or link preview",
    "click_flooding": "Click flooding",
    "duplicate_click": "Repeat click",
    "cookie_stuffing": "Cookie stuffing",
    "self_referral": "Self-referral",
    "too_fast": "Too fast after the click",
    "click_spamming": "Click spamming",
    "existing_customer": "Existing customer",
    "disposable_email": "Disposable email address",
    "paid_traffic": "Paid ad traffic",
    "blocked_country": "Blocked country",
    "country_mismatch": "Country mismatch",
    "conversion_rate_outlier": "Unusual conversion rate",
    "shared_device": "Shared device",
    "coupon_leak": "Leaked coupon",
}
DESCRIPTIONS = {
    "bot": "The click came from a bot, a link preview, a headless browser or a prefetch, had no user agent, or was "
    "a HEAD request.",
    "click_flooding": "More clicks on one link from one IP address or device than the limit per minute or per hour.",
    "duplicate_click": "The same visitor or device clicked the same link again inside the unique-click window.",
    "cookie_stuffing": "The link was loaded as an image, iframe or script, or opened without the user clicking; "
    "Safari, iOS and in-app browsers cannot say whether the user clicked, so a navigation of theirs counts when, of "
    "the last day's navigations through the same link from the same referrer in browsers that can, there were at "
    "least the minimum number and at least the minimum share had no click.",
    "self_referral": "The customer shares an email address (ignoring case, +tags and Gmail dots), an IP address, a "
    "device or a visitor cookie with the affiliate, or an IP address the affiliate signed in or clicked from.",
    "too_fast": "The conversion came fewer than the minimum seconds after its click, sooner than a person signs up "
    "or buys.",
    "click_spamming": "More than the maximum late share of the affiliate's conversions (once they have the minimum "
    "number) came over the late hours after their click: clicks sprayed to claim sales that would have come anyway.",
    "existing_customer": "The customer had converted in the program before (for programs that pay for new "
    "customers only).",
    "disposable_email": "The customer's email address is at a disposable-address provider.",
    "paid_traffic": "The click carried an ad network's click id: gclid, gbraid, wbraid or dclid (Google), msclkid "
    "(Microsoft), ttclid (TikTok), twclid (X), li_fat_id (LinkedIn), yclid (Yandex), epik (Pinterest), rdt_cid "
    "(Reddit) or sccid (Snapchat); not fbclid, which Facebook adds to every link, organic posts included.",
    "blocked_country": "The click came from a country the program blocks.",
    "country_mismatch": "The click came from another country than the conversion.",
    "conversion_rate_outlier": "The affiliate, once they have the minimum number of conversions, converts more than "
    "the maximum rate of their clicks.",
    "shared_device": "At least the maximum number of conversions, for any affiliates, came from one IP address or "
    "device within the hours set.",
    "coupon_leak": "Of a coupon's conversions in the days set (once there are the minimum number), more than the "
    "maximum share came without any click of its affiliate, as when the code is posted on coupon sites.",
}
# The thresholds' names on the settings page and in the audit log.
SETTING_LABELS = {
    "per_minute": "Clicks per minute",
    "per_hour": "Clicks per hour",
    "min_navigations": "Minimum navigations",
    "min_unactivated_share": "Minimum share without a click",
    "min_seconds": "Minimum seconds",
    "late_hours": "Late after (hours)",
    "max_late_share": "Maximum late share",
    "min_conversions": "Minimum conversions",
    "countries": "Countries (two-letter codes)",
    "max_rate": "Maximum conversion rate",
    "max_conversions": "Maximum conversions",
    "hours": "Within (hours)",
    "max_share": "Maximum share without a click",
    "days": "Period (days)",
}
ACTION_LABELS = {"off": "Off", "allow": "Record only", "flag": "Flag for review", "reject": "Reject"}


def rule_label(rule: str | None) -> str:
    """A rule's name as people read it: "self_referral" -> "Self-referral"; one not in the registry in plain words."""
    return LABELS.get(rule or "") or (rule or "").replace("_", " ").capitalize()


def setting_label(key: str) -> str:
    """A threshold's name: "per_minute" -> "Clicks per minute"."""
    return SETTING_LABELS.get(key) or key.replace("_", " ").capitalize()


def action_label(action: str | None) -> str:
    """What a rule does when it fires: "allow" -> "Record only"."""
    return ACTION_LABELS.get(action or "") or (action or "").replace("_", " ").capitalize()


@dataclass(frozen=True)
class FiredRule:
    rule: str
    action: Action
    weight: int
    evidence: str


@dataclass(frozen=True)
class Verdict:
    score: int
    action: Action  # allow when nothing flagged or rejected
    fired: tuple[FiredRule, ...]

    @property
    def reasons(self) -> list[str]:
        return [f.rule for f in self.fired if f.action != Action.ALLOW]

    def as_json(self) -> str:
        return _fired_json(self.fired)


@lru_cache(maxsize=1024)
def _fired_json(fired: tuple[FiredRule, ...]) -> str:
    # Most fired verdicts repeat (a repeat click's duplicate_click, the same bot's reasons): written once each.
    return json.dumps(
        [{"rule": f.rule, "action": f.action.value, "weight": f.weight, "evidence": f.evidence} for f in fired]
    )


CLEAN = Verdict(0, Action.ALLOW, ())  # what a click or conversion no rule fired on gets


@dataclass(frozen=True)
class ClickSignals:
    """What is known about one click when it is stored, with bounded counts of its recent neighbours."""

    bot_reason: str | None = None
    is_unique: bool = True
    sec_fetch_dest: str | None = None
    sec_fetch_mode: str | None = None
    sec_fetch_user: str | None = None
    reports_user_activation: bool = True  # False for WebKit, which never sends Sec-Fetch-User
    browser: str | None = None
    referrer_host: str | None = None
    # Recent navigations through this link from the same referrer host (or from none), by browsers that report
    # user activation (see NavigationHistory), and how many of them had none.
    source_navigations: int = 0
    source_unactivated: int = 0
    paid_click_params: tuple[str, ...] = ()
    country: str | None = None
    same_ip_last_minute: int = 0  # earlier clicks from this IP on this link
    same_ip_last_hour: int = 0
    same_device_last_minute: int = 0
    same_device_last_hour: int = 0


@dataclass(frozen=True)
class ConversionSignals:
    """What is known about one conversion and its winning click, with bounded history."""

    customer_email: str | None = None
    affiliate_email: str | None = None
    customer_ips: frozenset[str] = frozenset()  # the click's and the request's
    customer_devices: frozenset[str] = frozenset()
    customer_visitors: frozenset[str] = frozenset()
    affiliate_ips: frozenset[str] = frozenset()  # where the affiliate signed in, and their own clicks
    affiliate_devices: frozenset[str] = frozenset()
    affiliate_visitors: frozenset[str] = frozenset()
    since_click: timedelta | None = None
    existing_customer: bool = False
    paid_click_params: tuple[str, ...] = ()
    click_country: str | None = None
    conversion_country: str | None = None
    affiliate_conversions: int = 0  # attributed, before this one
    affiliate_late_conversions: int = 0  # of those, how many came long after their click
    affiliate_clicks: int = 0  # human clicks of the affiliate in the same period
    same_device_conversions: int = 0  # recent conversions from this IP or device, any affiliate
    coupon_code: str | None = None  # the coupon the conversion used
    coupon_conversions: int = 0  # the coupon's conversions in the rule's period, this one included
    coupon_without_click: int = 0  # of those, how many had no qualifying click of the coupon's affiliate


def settings_for(stored: Mapping[str, RuleSetting]) -> dict[str, RuleSetting]:
    """A program's settings: its stored ones over the defaults."""
    return {name: stored.get(name, default) for name, default in DEFAULT_RULES.items()}


def score_click(signals: ClickSignals, rules: Mapping[str, RuleSetting]) -> Verdict:
    """Judge one click."""
    fired: list[FiredRule] = []
    check = _checker(rules, fired)
    if signals.bot_reason:
        check("bot", f"bot click: {signals.bot_reason}")
    flood = rules["click_flooding"]
    per_minute, per_hour = flood.get("per_minute"), flood.get("per_hour")
    # The count furthest over (or least under) its limit; the first of equals, in this order.
    worst = (signals.same_ip_last_minute, "IP", "minute", per_minute)
    for candidate in (
        (signals.same_device_last_minute, "device", "minute", per_minute),
        (signals.same_ip_last_hour, "IP", "hour", per_hour),
        (signals.same_device_last_hour, "device", "hour", per_hour),
    ):
        if candidate[0] - candidate[3] > worst[0] - worst[3]:
            worst = candidate
    if worst[0] >= worst[3]:
        check(
            "click_flooding",
            f"{worst[0]} earlier clicks from this {worst[1]} on this link in the last {worst[2]} (limit {worst[3]})",
        )
    if not signals.is_unique:
        check("duplicate_click", "a repeat click of this visitor or device inside the unique window")
    stuffing = _stuffing(signals, rules["cookie_stuffing"])
    if stuffing:
        check("cookie_stuffing", stuffing)
    if signals.paid_click_params:
        check("paid_traffic", f"ad click id on the click: {', '.join(signals.paid_click_params)}")
    if signals.country:
        blocked = {c.upper() for c in rules["blocked_country"].get("countries") or []}
        if signals.country.upper() in blocked:
            check("blocked_country", f"click from {signals.country}, which this program blocks")
    return _verdict(fired)


def score_conversion(signals: ConversionSignals, rules: Mapping[str, RuleSetting]) -> Verdict:
    """Judge one attributed conversion."""
    fired: list[FiredRule] = []
    check = _checker(rules, fired)
    evidence = _self_referral(signals)
    if evidence:
        check("self_referral", evidence)
    minimum = timedelta(seconds=rules["too_fast"].get("min_seconds"))
    if signals.since_click is not None and signals.since_click < minimum:
        check(
            "too_fast",
            f"{signals.since_click.total_seconds():.1f} s after the click (minimum {minimum.total_seconds():.0f} s)",
        )
    spam = rules["click_spamming"]
    if signals.affiliate_conversions >= spam.get("min_conversions"):
        share = signals.affiliate_late_conversions / signals.affiliate_conversions
        if share > spam.get("max_late_share"):
            check(
                "click_spamming",
                f"{share:.0%} of the affiliate's {signals.affiliate_conversions} conversions came "
                f"over {spam.get('late_hours')} h after their click",
            )
    if signals.existing_customer:
        check("existing_customer", "this customer had converted before")
    domain = _domain(signals.customer_email)
    if domain and domain in DISPOSABLE_DOMAINS:
        check("disposable_email", f"{domain} is a disposable-address provider")
    if signals.paid_click_params:
        check("paid_traffic", f"the winning click carried {', '.join(signals.paid_click_params)}")
    blocked = {c.upper() for c in rules["blocked_country"].get("countries") or []}
    if signals.click_country and signals.click_country.upper() in blocked:
        check("blocked_country", f"the winning click came from {signals.click_country}")
    if signals.click_country and signals.conversion_country and signals.click_country != signals.conversion_country:
        check("country_mismatch", f"click from {signals.click_country}, conversion from {signals.conversion_country}")
    outlier = rules["conversion_rate_outlier"]
    if signals.affiliate_conversions >= outlier.get("min_conversions") and signals.affiliate_clicks:
        rate = signals.affiliate_conversions / signals.affiliate_clicks
        if rate > outlier.get("max_rate"):
            check(
                "conversion_rate_outlier",
                f"{signals.affiliate_conversions} conversions from {signals.affiliate_clicks} clicks ({rate:.0%})",
            )
    shared = rules["shared_device"]
    if signals.same_device_conversions >= shared.get("max_conversions"):
        check(
            "shared_device",
            f"{signals.same_device_conversions} conversions from this IP or device in the last {shared.get('hours')} h",
        )
    leak = rules["coupon_leak"]
    if signals.coupon_code and signals.coupon_conversions >= leak.get("min_conversions"):
        share = signals.coupon_without_click / signals.coupon_conversions
        if share > leak.get("max_share"):
            check(
                "coupon_leak",
                f"{signals.coupon_without_click} of the {signals.coupon_conversions} conversions with "
                f"coupon {signals.coupon_code} in {leak.get('days')} days ({share:.0%}) came without "
                "any click of its affiliate",
            )
    return _verdict(fired)


def mailbox_of(email: str | None) -> str | None:
    """The mailbox an address reaches, to compare two addresses: case folded, +tags dropped, and for
    Gmail the dots too; None for what is not an address."""
    if not email or "@" not in email:
        return None
    local, _, domain = email.strip().lower().rpartition("@")
    local = local.split("+", 1)[0]
    if domain in GMAIL_DOMAINS:
        local, domain = local.replace(".", ""), "gmail.com"
    return f"{local}@{domain}"


def paid_click_params(query_keys: set[str]) -> tuple[str, ...]:
    return tuple(name for name in PAID_CLICK_PARAMS if name in query_keys)


def with_setting(rules: Mapping[str, RuleSetting], rule: str, **changes) -> dict[str, RuleSetting]:
    """A copy of ``rules`` with one rule changed (for tests and previews)."""
    return {**rules, rule: replace(rules[rule], **changes)}


def _checker(rules: Mapping[str, RuleSetting], fired: list[FiredRule]):
    def check(rule: str, evidence: str) -> None:
        setting = rules[rule]
        if setting.action != Action.OFF:
            fired.append(FiredRule(rule, setting.action, setting.weight, evidence))

    return check


def _verdict(fired: list[FiredRule]) -> Verdict:
    if not fired:
        return CLEAN  # most clicks: one shared verdict, not a new one each
    counted = [f for f in fired if f.action != Action.ALLOW]
    action = max((f.action for f in counted), key=SEVERITY.__getitem__, default=Action.ALLOW)
    return Verdict(min(100, sum(f.weight for f in counted)), action, tuple(fired))


def reports_user_activation(os: str | None, browser: str | None, user_agent: str | None) -> bool:
    """Whether this browser says when a navigation came from the user.

    Not WebKit (Safari, and every iOS browser), and not Android's in-app WebViews (``; wv)``), where an app
    opening a tapped link may load it without a user gesture the page can see.
    """
    return os != "iOS" and browser not in WEBKIT_BROWSERS and "; wv)" not in (user_agent or "")


def _stuffing(signals: ClickSignals, setting: RuleSetting) -> str | None:
    """A link fetched as anything but a top-level page, or a page navigation the user did not start.

    Any Sec-Fetch-Dest other than ``document`` (image, iframe, script, empty for fetch(), video, font, ...)
    means the link was loaded by a page, not visited. A navigation without ``Sec-Fetch-User: ?1`` was
    started by script or a redirect, not by a click.

    Browsers that never send that header (WebKit, in-app WebViews) are judged by their source instead:
    stuffing is a volume business, so a page that sends its visitors through a link without a click does it
    to every browser. When at least ``min_navigations`` recent navigations through the same link from the
    same referrer host (or, for a click without a referrer, from none) came from browsers that do report
    activation, and at least ``min_unactivated_share`` of them had none, such a navigation is taken for
    stuffing too. Its first visitors, before that evidence exists, pass.
    """
    dest = (signals.sec_fetch_dest or "").lower()
    if dest and dest != "document":
        return f"loaded as {dest[:32]} (Sec-Fetch-Dest), not visited"
    if not _is_navigation(signals) or signals.sec_fetch_user == "?1":
        return None
    if signals.reports_user_activation:
        return "a navigation without user activation (no Sec-Fetch-User)"
    navigations, unactivated = signals.source_navigations, signals.source_unactivated
    enough = navigations >= max(1, setting.get("min_navigations"))
    if not enough or unactivated / navigations < setting.get("min_unactivated_share"):
        return None
    source = f"from {signals.referrer_host}" if signals.referrer_host else "without a referrer"
    return (
        f"{(signals.browser or 'this browser')[:40]} cannot say whether the user clicked; {unactivated} of the "
        f"{navigations} navigations through this link {source} in the last day by browsers that can had no user "
        f"activation"
    )


def _is_navigation(signals: ClickSignals) -> bool:
    """A top-level page load: what a click on a link, or a script sending the page elsewhere, makes."""
    return (signals.sec_fetch_mode or "").lower() == "navigate" and (signals.sec_fetch_dest or "").lower() == "document"


Source = tuple[int, str | None]  # (link, referrer host)
Observed = tuple[Source, int, bool]  # source, hour, without user activation


class NavigationHistory:
    """Recent top-level navigations per (link, referrer host), from browsers that report user activation.

    What the cookie-stuffing rule judges Safari's, iOS's and in-app browsers' navigations by. Only a unique
    (first of its visitor or device on the link), non-bot navigation counts, so one visitor weighs once. A
    navigation without a referrer counts under the host None. Counts are kept per hour, for the last 24
    hours (a navigation stays counted 23 to 24 hours), for at most ``max_sources`` (link, host) pairs: the one
    counted least recently is dropped first, and it holds little evidence, since busy sources are counted
    often. Memory stays bounded at any traffic: for 20,000 pairs, about 10 MB when a tenth of them see
    navigations every hour, 33 MB when all do.

    The history is in memory: each ingester process (or ingester thread, one per worker) knows the clicks it
    stored itself since it started, and rebuilds it from new traffic after a restart.
    """

    HOURS = 24
    MAX_SOURCES = 20_000

    def __init__(self, max_sources: int = MAX_SOURCES) -> None:
        self.max_sources = max_sources
        # source -> [hour, navigations, without activation, hour, ...]: flat, half the memory of a dict per source
        self._sources: OrderedDict[Source, list[int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sources)

    def recent(self, link_id: int, host: str | None, at: datetime) -> tuple[int, int]:
        """Navigations through the link from ``host`` in the day up to ``at``, and how many had no user activation."""
        counts = self._sources.get((link_id, host))
        if not counts:
            return 0, 0
        now = _hour(at)
        navigations = unactivated = 0
        for i in range(0, len(counts), 3):
            if now - self.HOURS < counts[i] <= now:
                navigations += counts[i + 1]
                unactivated += counts[i + 2]
        return navigations, unactivated

    def observe(self, signals: ClickSignals, link_id: int, at: datetime) -> Observed | None:
        """Count a click that is evidence (see the class); return what was counted, for ``forget``, or None."""
        if not (
            signals.reports_user_activation and signals.is_unique and not signals.bot_reason and _is_navigation(signals)
        ):
            return None
        key = (link_id, signals.referrer_host)
        counts = self._sources.get(key)
        if counts is None:
            counts = self._sources[key] = []
            if len(self._sources) > self.max_sources:
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(key)
        hour = _hour(at)
        for i in range(len(counts) - 3, -1, -3):  # this hour's is usually the last
            if counts[i] == hour:
                break
        else:  # a new hour: drop those that have left the window
            live = [i for i in range(0, len(counts), 3) if counts[i] > hour - self.HOURS]
            counts[:] = [*(value for i in live for value in counts[i : i + 3]), hour, 0, 0]
            i = len(counts) - 3
        unactivated = signals.sec_fetch_user != "?1"
        counts[i + 1] += 1
        counts[i + 2] += unactivated
        return key, hour, unactivated

    def forget(self, observed: Iterable[Observed]) -> None:
        """Take back what ``observe`` counted (for clicks that were not stored after all)."""
        for key, hour, unactivated in observed:
            counts = self._sources.get(key) or []
            for i in range(0, len(counts), 3):
                if counts[i] == hour:
                    counts[i + 1] = max(0, counts[i + 1] - 1)
                    counts[i + 2] = max(0, counts[i + 2] - unactivated)


def _hour(at: datetime) -> int:
    return int(at.timestamp()) // 3600


def _self_referral(signals: ConversionSignals) -> str | None:
    customer, affiliate = mailbox_of(signals.customer_email), mailbox_of(signals.affiliate_email)
    if customer and customer == affiliate:
        return "the customer's email is the affiliate's"
    for kind, mine, theirs in (
        ("IP", signals.customer_ips, signals.affiliate_ips),
        ("device", signals.customer_devices, signals.affiliate_devices),
        ("visitor cookie", signals.customer_visitors, signals.affiliate_visitors),
    ):
        shared = (mine - {None, ""}) & theirs
        if shared:
            return (
                f"the customer shares an {kind} with the affiliate"
                if kind == "IP"
                else (f"the customer shares a {kind} with the affiliate")
            )
    return None


def _domain(email: str | None) -> str | None:
    """The email's domain as the disposable list spells it: lower case, internationalised names in punycode."""
    if not email or "@" not in email:
        return None
    domain = email.rsplit("@", 1)[1].strip().rstrip(".").lower()
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain
