"""Labelled synthetic traffic for the fraud engine: what clicks and conversions of each kind look like.

Clicks are generated as HTTP requests (method, headers, query) and turned into the engine's
``ClickSignals`` exactly as the app does: the redirector's user-agent parsing and bot test, the
Sec-Fetch headers as sent, ad click ids from the query, and flooding counts from the stream
itself (earlier clicks of the same IP or device on the same link in the last minute and hour,
as the ingester counts them). Conversions become ``ConversionSignals``.
"""

from __future__ import annotations

import random
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from disposable_email_domains import blocklist

from affiliate.services.fraud import (
    Action,
    ClickSignals,
    ConversionSignals,
    paid_click_params,
    reports_user_activation,
    score_click,
    score_conversion,
    settings_for,
    with_setting,
)
from redirector.enrich import bot_reason, parse_user_agent

BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",  # noqa: E501 - a real user agent
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Mobile Safari/537.36",  # noqa: E501 - a real user agent
    "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/{s}.0 Chrome/{v}.0.0.0 Mobile Safari/537.36",  # noqa: E501 - a real user agent
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.0.0",  # noqa: E501 - a real user agent
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 OPR/{o}.0.0.0",  # noqa: E501 - a real user agent
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{f}.0) Gecko/20100101 Firefox/{f}.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.{m}; rv:{f}.0) Gecko/20100101 Firefox/{f}.0",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:{f}.0) Gecko/20100101 Firefox/{f}.0",
    "Mozilla/5.0 (Android 14; Mobile; rv:{f}.0) Gecko/{f}.0 Firefox/{f}.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{a}.{m} Safari/605.1.15",  # noqa: E501 - a real user agent
    "Mozilla/5.0 (iPhone; CPU iPhone OS {i}_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{i}.{m} Mobile/15E148 Safari/604.1",  # noqa: E501 - a real user agent
    "Mozilla/5.0 (iPad; CPU OS {i}_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{i}.{m} Mobile/15E148 Safari/604.1",  # noqa: E501 - a real user agent
    "Mozilla/5.0 (iPhone; CPU iPhone OS {i}_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/{v}.0.0.0 Mobile/15E148 Safari/604.1",  # noqa: E501 - a real user agent
    # in-app browsers, where much social traffic is clicked
    "Mozilla/5.0 (iPhone; CPU iPhone OS {i}_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [Pinterest/iOS]",  # noqa: E501 - a real user agent
    "Mozilla/5.0 (Linux; Android 13; SM-S918B Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/{v}.0.0.0 Mobile Safari/537.36 [Pinterest/Android]",  # noqa: E501 - a real user agent
    "Mozilla/5.0 (iPhone; CPU iPhone OS {i}_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Snapchat/12.55.0.39 (like Safari/8614.2.9.0.10, panda)",  # noqa: E501 - a real user agent
    "Mozilla/5.0 (iPhone; CPU iPhone OS {i}_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 309.0.0.28.109 (iPhone14,5; iOS {i}_{m}; en_US; en; scale=3.00; 1170x2532; 536391218)",  # noqa: E501 - a real user agent
    "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/UQ1A.240105.004; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/{v}.0.0.0 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/448.0.0.40.110;]",  # noqa: E501 - a real user agent
    "Mozilla/5.0 (iPhone; CPU iPhone OS {i}_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/448.0.0.34.109;FBBV/560397178;FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;FBSV/{i}.{m};FBSS/3;FBCR/;FBID/phone;FBLC/en_US;FBOP/80]",  # noqa: E501 - a real user agent
    "Mozilla/5.0 (Linux; Android 12; SM-A515F Build/SP1A.210812.016; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/{v}.0.0.0 Mobile Safari/537.36 musical_ly_2023206030 JsSdk/1.0 NetType/WIFI Channel/googleplay AppName/musical_ly app_version/32.6.3 ByteLocale/en ByteFullLocale/en Region/US BytedanceWebview/d8a21c6",  # noqa: E501 - a real user agent
    "Mozilla/5.0 (iPhone; CPU iPhone OS {i}_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [LinkedInApp]/9.29.6380",  # noqa: E501 - a real user agent
)  # fmt: skip
PREVIEW_AGENTS = (
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Twitterbot/1.0",
    "WhatsApp/2.23.20.0 A",
    "TelegramBot (like TwitterBot)",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
    "python-requests/2.32.3",
    "curl/8.5.0",
    "",
)
EMAIL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "icloud.com", "proton.me", "example-corp.com", "web.de")
PAID = ("gclid", "gbraid", "msclkid", "ttclid")
CLASSES = ("legitimate", "bot", "cookie_stuffing", "click_injection", "click_flooding", "self_referral",
           "disposable_email", "paid_traffic")  # fmt: skip


# Rough global shares (percent) of each template above: Chrome and Safari lead, in-app browsers are a tenth.
SHARES = (22, 5, 2, 20, 4, 5, 2, 3, 1, 0.5, 0.5, 4, 14, 2, 2, *(1.5,) * 8)


def browser_agents(rng: random.Random, count: int) -> list[str]:
    """Real browser user agents of current families and versions, in rough proportion to their use."""
    return [
        rng.choices(BROWSERS, weights=SHARES)[0].format(
            v=rng.randint(118, 132),
            f=rng.randint(120, 134),
            s=rng.randint(22, 27),
            o=rng.randint(105, 115),
            a=rng.randint(16, 18),
            i=rng.randint(16, 18),
            m=rng.randint(0, 6),
        )
        for _ in range(count)
    ]


@dataclass
class Event:
    label: str
    caught: bool


class Generator:
    """Generates one labelled event at a time and judges it with the real engine."""

    def __init__(self, seed: int = 11) -> None:
        self.rng = random.Random(seed)
        self.rules = settings_for({})
        self.no_paid_rules = with_setting(self.rules, "paid_traffic", action=Action.FLAG)
        self.disposable = sorted(blocklist)
        self.agents = browser_agents(self.rng, 400)
        self.seen: dict[tuple, deque] = defaultdict(deque)  # (kind, link, key) -> click times (seconds)
        self.clock = 0.0

    def events(self, per_class: dict[str, int]) -> Iterator[Event]:
        plan = [label for label, count in per_class.items() for _ in range(count)]
        self.rng.shuffle(plan)
        for label in plan:
            yield Event(label, getattr(self, f"_{label}")())

    # --- clicks ---

    def _click(self, *, agent: str, method: str = "GET", headers: dict | None = None, query: set | None = None,
               ip: str | None = None, link: int | None = None, rules=None, burst: int = 1) -> bool:  # fmt: skip
        """Send ``burst`` clicks as one visitor; True when the engine catches the last."""
        self.clock += self.rng.expovariate(1 / 3.0)
        ip = (
            ip
            or f"{self.rng.randint(11, 220)}.{self.rng.randint(0, 255)}.{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}"  # noqa: E501 - a real user agent
        )
        link = link if link is not None else self.rng.randrange(5000)
        environ = {"HTTP_" + name.upper().replace("-", "_"): value for name, value in (headers or {}).items()}
        device = parse_user_agent(agent)
        reason = bot_reason(method, agent, device, environ)
        activation = reports_user_activation(device.os, device.browser, agent)
        verdict = None
        for _ in range(burst):
            self.clock += self.rng.uniform(0.5, 4.0) if burst > 1 else 0
            counts = []
            for kind, key in (("ip", ip), ("device", (ip.rsplit(".", 1)[0], agent))):
                times = self.seen[(kind, link, key)]
                while times and self.clock - times[0] > 3600:
                    times.popleft()
                counts.append((sum(1 for at in times if self.clock - at <= 60), len(times)))
                times.append(self.clock)
            signals = ClickSignals(
                bot_reason=reason,
                is_unique=counts[0][1] == 0,
                sec_fetch_dest=environ.get("HTTP_SEC_FETCH_DEST"),
                sec_fetch_mode=environ.get("HTTP_SEC_FETCH_MODE"),
                sec_fetch_user=environ.get("HTTP_SEC_FETCH_USER"),
                reports_user_activation=activation,
                paid_click_params=paid_click_params(query or set()),
                country="US",
                same_ip_last_minute=counts[0][0],
                same_ip_last_hour=counts[0][1],
                same_device_last_minute=counts[1][0],
                same_device_last_hour=counts[1][1],
            )
            verdict = score_click(signals, rules or self.rules)
        return verdict.action != Action.ALLOW

    def _navigation(self, agent: str) -> dict:
        """The Sec-Fetch headers of a click on a link, as the agent's browser sends them."""
        if self.rng.random() < 0.15:
            return {}  # older browsers send no Sec-Fetch headers at all
        headers = {"Sec-Fetch-Site": self.rng.choice(("cross-site", "none")), "Sec-Fetch-Mode": "navigate",
                   "Sec-Fetch-Dest": "document", "Sec-Fetch-User": "?1"}  # fmt: skip
        device = parse_user_agent(agent)
        if device.os == "iOS" or "Safari/605" in agent:
            del headers["Sec-Fetch-User"]  # WebKit never sends it
        elif "; wv)" in agent and self.rng.random() < 0.5:
            del headers["Sec-Fetch-User"]  # an app opening the link in its WebView
        return headers

    def _legitimate(self) -> bool:
        if self.rng.random() < 0.5:
            clicks = self.rng.choice((1, 1, 1, 2, 3))
            link = self.rng.randrange(5000)
            ip = f"{self.rng.randint(11, 220)}.{self.rng.randint(0, 255)}.{self.rng.randint(0, 255)}.7"
            agent = self.rng.choice(self.agents)
            # organic social posts: Facebook adds fbclid to every outbound link, ads or not
            query = {"fbclid", "utm_source"} if self.rng.random() < 0.2 else None
            caught = False
            for _ in range(clicks):  # a shopper who comes back to the link once or twice
                self.clock += self.rng.uniform(30, 900)
                caught = self._click(agent=agent, headers=self._navigation(agent), ip=ip, link=link, query=query,
                                     rules=self.no_paid_rules if query else None)  # fmt: skip
            return caught
        return score_conversion(self._conversion(), self.rules).action != Action.ALLOW

    def _bot(self) -> bool:
        choice = self.rng.random()
        if choice < 0.15:
            return self._click(agent=self.rng.choice(self.agents), method="HEAD")
        if choice < 0.3:
            header = self.rng.choice(("Purpose", "Sec-Purpose"))
            return self._click(agent=self.rng.choice(self.agents), headers={header: "prefetch"})
        return self._click(agent=self.rng.choice(PREVIEW_AGENTS))

    def _cookie_stuffing(self) -> bool:
        if self.rng.random() < 0.7:
            dest = self.rng.choice(("image", "iframe", "script", "empty"))
            headers = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": dest}
        else:  # a navigation started by script, without the user's click
            headers = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
        return self._click(agent=self.rng.choice(self.agents), headers=headers)

    def _click_flooding(self) -> bool:
        agent = self.rng.choice(self.agents)
        return self._click(agent=agent, headers=self._navigation(agent), burst=self.rng.randint(8, 40))

    def _paid_traffic(self) -> bool:
        agent = self.rng.choice(self.agents)
        return self._click(agent=agent, headers=self._navigation(agent),
                           query={self.rng.choice(PAID), "utm_source"}, rules=self.no_paid_rules)  # fmt: skip

    # --- conversions ---

    def _conversion(self, **changes) -> ConversionSignals:
        rng = self.rng
        user = f"{rng.choice(('sam', 'alex', 'kim', 'lee', 'pat'))}{rng.randint(1, 99999)}"
        fields = {
            "customer_email": f"{user}@{rng.choice(EMAIL_DOMAINS)}",
            "affiliate_email": f"partner{rng.randint(1, 500)}@{rng.choice(EMAIL_DOMAINS)}",
            "customer_ips": frozenset({f"{rng.randint(11, 220)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.9"}),
            "customer_devices": frozenset({f"{rng.getrandbits(128):032x}"}),
            "customer_visitors": frozenset({f"v{rng.getrandbits(100):026x}"}),
            "affiliate_ips": frozenset({f"{rng.randint(11, 220)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.3"}),
            "affiliate_devices": frozenset({f"{rng.getrandbits(128):032x}"}),
            "affiliate_visitors": frozenset({f"v{rng.getrandbits(100):026x}"}),
            # Real shoppers take minutes to days; a long tail decides weeks later.
            "since_click": timedelta(seconds=min(rng.lognormvariate(8.5, 1.8), 29 * 86400) + 20),
            "click_country": "US",
            "conversion_country": "US",
            "affiliate_conversions": rng.randint(0, 60),
            "affiliate_clicks": rng.randint(400, 5000),
            "same_device_conversions": rng.choice((0, 0, 0, 1)),
        }
        fields["affiliate_late_conversions"] = int(fields["affiliate_conversions"] * rng.uniform(0.0, 0.35))
        fields.update(changes)
        return ConversionSignals(**fields)

    def _click_injection(self) -> bool:
        signals = self._conversion(since_click=timedelta(seconds=self.rng.uniform(0.5, 9.5)))
        return score_conversion(signals, self.rules).action != Action.ALLOW

    def _self_referral(self) -> bool:
        rng = self.rng
        base = self._conversion()
        local = f"partner.{rng.randint(1, 999)}"
        kind = rng.choice(("email", "ip", "device", "visitor"))
        if kind == "email":
            signals = self._conversion(affiliate_email=f"{local}@gmail.com",
                                       customer_email=f"{local.replace('.', '').upper()}+{rng.randint(1, 99)}@googlemail.com")  # fmt: skip  # noqa: E501 - a real user agent
        elif kind == "ip":
            signals = self._conversion(
                customer_ips=base.affiliate_ips | base.customer_ips, affiliate_ips=base.affiliate_ips
            )
        elif kind == "device":
            signals = self._conversion(
                customer_devices=base.affiliate_devices, affiliate_devices=base.affiliate_devices
            )
        else:
            signals = self._conversion(customer_visitors=base.affiliate_visitors,
                                       affiliate_visitors=base.affiliate_visitors)  # fmt: skip
        return score_conversion(signals, self.rules).action != Action.ALLOW

    def _disposable_email(self) -> bool:
        signals = self._conversion(customer_email=f"x{self.rng.randint(1, 10**6)}@{self.rng.choice(self.disposable)}")
        return score_conversion(signals, self.rules).action != Action.ALLOW


def evaluate(per_class: dict[str, int], seed: int = 11) -> tuple[dict[str, float], float, int]:
    """Recall per fraud class, the false-positive rate on legitimate traffic, and the event count."""
    caught: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    for event in Generator(seed).events(per_class):
        total[event.label] += 1
        caught[event.label] += event.caught
    recall = {label: round(caught[label] / total[label], 4) for label in per_class if label != "legitimate"}
    false_positive_rate = round(caught["legitimate"] / max(total["legitimate"], 1), 4)
    return recall, false_positive_rate, sum(total.values())
