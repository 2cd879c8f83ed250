"""Labelled synthetic traffic for the fraud engine: what clicks and conversions of each kind look like.

Clicks are generated as HTTP requests (method, headers, referrer, query) and turned into the engine's
``ClickSignals`` exactly as the app does: the redirector's user-agent parsing and bot test, the
Sec-Fetch headers as sent, the referrer's host, ad click ids from the query, flooding counts from the
stream itself (earlier clicks of the same IP or device on the same link in the last minute and hour,
as the ingester counts them), and navigation evidence from the ingester's own ``NavigationHistory``,
fed with every click in order. Conversions become ``ConversionSignals``.

Visitors arrive about every 3 s; a visitor's own later clicks (a shopper coming back, a flooding
burst) happen at their own pace without holding up the others. Legitimate clicks go to 5,000
affiliates' links, a few of them far more popular than the rest, from their affiliate's site, a
social or search platform, or no referrer (apps that send none, typed and shared links). A few
affiliate sites open their outbound links by script (a cloaking plugin's JavaScript or meta-refresh
redirect), so browsers send no user activation from them although the visitor clicked. Cookie
stuffing comes from stuffers: each has a page (some send no referrer) that pushes every visitor,
whatever their browser, through one to three links, most of them its own, some an affiliate's that
also has real traffic; each stuffer uses one technique, a subresource load or a script-started
navigation. A stuffer's first visitors, before there is evidence about it, are missed.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate

from disposable_email_domains import blocklist

from affiliate.services.fraud import (
    Action,
    ClickSignals,
    ConversionSignals,
    NavigationHistory,
    paid_click_params,
    reports_user_activation,
    score_click,
    score_conversion,
    settings_for,
    with_setting,
)
from affiliate.urls import url_host
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
IN_APP = ("[Pinterest/", "Snapchat/", "Instagram ", "[FB_IAB/", "[FBAN/", "musical_ly", "[LinkedInApp]")

START = datetime(2026, 3, 2, tzinfo=UTC)
LINKS = 5000  # legitimate affiliates' links; stuffers' own links come after
CONTENT_SITES = 1600  # the affiliates' own sites
# Where else legitimate clicks come from: platforms that link out with plain redirects, keeping activation.
PLATFORMS = ("www.youtube.com", "www.reddit.com", "t.co", "www.pinterest.com", "l.instagram.com",
             "lm.facebook.com", "www.google.com", "www.bing.com", "duckduckgo.com", "news.ycombinator.com")  # fmt: skip
SCRIPTED_SITES = 0.01  # share of affiliate sites whose outbound links open by script, losing user activation
STUFFERS = 40
NO_REFERRER_STUFFERS = 0.3  # pages that send no referrer (Referrer-Policy: no-referrer)
NAVIGATING_STUFFERS = 0.3  # stuffers that navigate by script; the rest load the link as an image, frame, script
SCRIPTED_NAVIGATIONS = 0.3  # of stuffing clicks, those from navigating stuffers: the same mix as before campaigns
HYBRID_LINKS = 0.2  # of stuffed links, those that belong to an affiliate with real traffic too


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


@dataclass(frozen=True)
class Campaign:
    """One stuffer's page pushing its visitors through one link."""

    link: int
    referrer: str | None  # the stuffing page, or None when it sends no referrer
    dest: str  # Sec-Fetch-Dest of its loads: "document" for a script-started navigation


class Generator:
    """Generates one labelled event at a time and judges it with the real engine."""

    def __init__(self, seed: int = 11) -> None:
        rng = self.rng = random.Random(seed)
        self.rules = settings_for({})
        self.no_paid_rules = with_setting(self.rules, "paid_traffic", action=Action.FLAG)
        self.disposable = sorted(blocklist)
        self.agents = browser_agents(rng, 400)
        self.seen: dict[tuple, deque] = defaultdict(deque)  # (kind, link, key) -> click times (seconds)
        self.history = NavigationHistory()
        self.clock = 0.0
        self.notes: Counter = Counter()
        # A few links get most clicks (Zipf-like popularity); each belongs to an affiliate's site.
        self.link_weights = list(accumulate([1 / (rank + 1) ** 0.8 for rank in range(LINKS)]))
        site_names = [f"{('blog', 'reviews', 'deals', 'home', 'tech')[n % 5]}{n}.example" for n in range(CONTENT_SITES)]
        self.link_site = [rng.choice(site_names) for _ in range(LINKS)]
        sites = sorted(set(self.link_site))
        # Its own generator: the share changes which sites script their links and nothing else.
        self.scripted = set(random.Random(seed).sample(sites, round(len(sites) * SCRIPTED_SITES)))
        self.campaigns: list[Campaign] = []
        weights = []
        for stuffer in range(STUFFERS):
            page = f"https://coupons-{stuffer}.example/{rng.choice(('', 'deals', 'go'))}"
            referrer = None if rng.random() < NO_REFERRER_STUFFERS else page
            dest = rng.choice(("image", "iframe", "script", "empty"))
            if rng.random() < NAVIGATING_STUFFERS:
                dest = "document"
            links = rng.choice((1, 1, 2, 3))
            for n in range(links):
                link = rng.randrange(LINKS) if rng.random() < HYBRID_LINKS else LINKS + 10 * stuffer + n
                self.campaigns.append(Campaign(link, referrer, dest))
                weights.append(1 / (stuffer + 1) / links)  # a few stuffers have most of the volume
        # Which stuffers happen to be the big ones must not change the mix: navigations stay SCRIPTED_NAVIGATIONS.
        navigating = sum(w for w, c in zip(weights, self.campaigns, strict=True) if c.dest == "document")
        loading = sum(weights) - navigating
        for i, campaign in enumerate(self.campaigns):
            if campaign.dest == "document":
                weights[i] *= SCRIPTED_NAVIGATIONS / navigating
            else:
                weights[i] *= (1 - SCRIPTED_NAVIGATIONS) / loading
        self.campaign_weights = list(accumulate(weights))

    def events(self, per_class: dict[str, int]) -> Iterator[Event]:
        plan = [label for label, count in per_class.items() for _ in range(count)]
        self.rng.shuffle(plan)
        for label in plan:
            yield Event(label, getattr(self, f"_{label}")())

    # --- clicks ---

    def _arrival(self) -> float:
        """When the next visitor comes (seconds): about every 3 s."""
        self.clock += self.rng.expovariate(1 / 3.0)
        return self.clock

    def _click(
        self,
        *,
        agent: str,
        method: str = "GET",
        headers: dict | None = None,
        query: set | None = None,
        ip: str | None = None,
        link: int | None = None,
        referrer: str | None = None,
        rules=None,
        burst: int = 1,
        at: float | None = None,
    ) -> bool:
        """Send ``burst`` clicks as one visitor, from ``at`` on; True when the engine catches the last."""
        at = self._arrival() if at is None else at
        ip = (
            ip
            or f"{self.rng.randint(11, 220)}.{self.rng.randint(0, 255)}.{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}"  # noqa: E501 - a real user agent
        )
        link = link if link is not None else self.rng.randrange(LINKS)
        environ = {"HTTP_" + name.upper().replace("-", "_"): value for name, value in (headers or {}).items()}
        device = parse_user_agent(agent)
        reason = bot_reason(method, device, environ)
        activation = reports_user_activation(device.os, device.browser, agent)
        host = url_host(referrer)
        verdict = None
        for _ in range(burst):
            at += self.rng.uniform(0.5, 4.0) if burst > 1 else 0
            moment = START + timedelta(seconds=at)
            navigations, unactivated = self.history.recent(link, host, moment)
            counts = []
            for kind, key in (("ip", ip), ("device", (ip.rsplit(".", 1)[0], agent))):
                times = self.seen[(kind, link, key)]
                while times and at - times[0] > 3600:
                    times.popleft()
                counts.append((sum(1 for t in times if at - t <= 60), len(times)))
                times.append(at)
            signals = ClickSignals(
                bot_reason=reason,
                is_unique=counts[0][1] == 0,
                sec_fetch_dest=environ.get("HTTP_SEC_FETCH_DEST"),
                sec_fetch_mode=environ.get("HTTP_SEC_FETCH_MODE"),
                sec_fetch_user=environ.get("HTTP_SEC_FETCH_USER"),
                reports_user_activation=activation,
                browser=device.browser,
                referrer_host=host,
                source_navigations=navigations,
                source_unactivated=unactivated,
                paid_click_params=paid_click_params(query or set()),
                country="US",
                same_ip_last_minute=counts[0][0],
                same_ip_last_hour=counts[0][1],
                same_device_last_minute=counts[1][0],
                same_device_last_hour=counts[1][1],
            )
            verdict = score_click(signals, rules or self.rules)
            self.history.observe(signals, link, moment)
        return verdict.action != Action.ALLOW

    def _navigation(self, agent: str, *, activated: bool = True) -> dict:
        """The Sec-Fetch headers of a click on a link, as the agent's browser sends them.

        ``activated`` False: the referring page opened the link by script after the click, so no
        browser can tell that the user started it.
        """
        if self.rng.random() < 0.15:
            return {}  # older browsers send no Sec-Fetch headers at all
        headers = {
            "Sec-Fetch-Site": self.rng.choice(("cross-site", "none")),
            "Sec-Fetch-Mode": "navigate",
            "Sec-Fetch-Dest": "document",
            "Sec-Fetch-User": "?1",
        }
        device = parse_user_agent(agent)
        app_opened = "; wv)" in agent and self.rng.random() < 0.5  # an app opening the link in its WebView
        webkit = device.os == "iOS" or "Safari/605" in agent  # WebKit never sends it
        if webkit or app_opened or not activated:
            del headers["Sec-Fetch-User"]
        return headers

    def _referrer(self, link: int, agent: str) -> str | None:
        """Where a shopper clicked the link: the affiliate's site, a platform, or nowhere a browser tells."""
        roll = self.rng.random()
        if roll < (0.6 if any(marker in agent for marker in IN_APP) else 0.2):
            return None  # in-app browsers that send none, links typed or shared in chats and email
        if roll < 0.85:
            return f"https://{self.link_site[link]}/post-{self.rng.randrange(40)}"
        return f"https://{self.rng.choice(PLATFORMS)}/"

    def _legitimate(self) -> bool:
        rng = self.rng
        if rng.random() < 0.5:
            clicks = rng.choice((1, 1, 1, 2, 3))
            link = rng.choices(range(LINKS), cum_weights=self.link_weights)[0]
            ip = f"{rng.randint(11, 220)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.7"
            agent = rng.choice(self.agents)
            referrer = self._referrer(link, agent)
            scripted = url_host(referrer) in self.scripted
            # organic social posts: Facebook adds fbclid to every outbound link, ads or not
            query = {"fbclid", "utm_source"} if rng.random() < 0.2 else None
            caught = False
            at = self._arrival()
            for _ in range(clicks):  # a shopper who comes back to the link once or twice
                at += rng.uniform(30, 900)
                headers = self._navigation(agent, activated=not scripted)
                caught = self._click(
                    agent=agent,
                    headers=headers,
                    ip=ip,
                    link=link,
                    referrer=referrer,
                    query=query,
                    rules=self.no_paid_rules if query else None,
                    at=at,
                )
            self._note("legitimate", agent, headers, caught)
            return caught
        return score_conversion(self._conversion(), self.rules).action != Action.ALLOW

    def _note(self, label: str, agent: str, headers: dict, caught: bool) -> None:
        """Tally an event by its kind of request, navigations by browsers that cannot report activation apart."""
        kind = "other"
        if headers.get("Sec-Fetch-Mode") == "navigate" and headers.get("Sec-Fetch-Dest") == "document":
            device = parse_user_agent(agent)
            reports = reports_user_activation(device.os, device.browser, agent)
            kind = "navigation" if reports else "navigation, cannot report activation"
        self.notes[(label, kind, caught)] += 1

    def _bot(self) -> bool:
        choice = self.rng.random()
        if choice < 0.15:
            return self._click(agent=self.rng.choice(self.agents), method="HEAD")
        if choice < 0.3:
            header = self.rng.choice(("Purpose", "Sec-Purpose"))
            return self._click(agent=self.rng.choice(self.agents), headers={header: "prefetch"})
        return self._click(agent=self.rng.choice(PREVIEW_AGENTS))

    def _cookie_stuffing(self) -> bool:
        campaign = self.rng.choices(self.campaigns, cum_weights=self.campaign_weights)[0]
        if campaign.dest == "document":  # a navigation started by script, without the user's click
            headers = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
        else:
            headers = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": campaign.dest}
        agent = self.rng.choice(self.agents)
        caught = self._click(agent=agent, headers=headers, link=campaign.link, referrer=campaign.referrer)
        self._note("cookie_stuffing", agent, headers, caught)
        return caught

    def _click_flooding(self) -> bool:
        agent = self.rng.choice(self.agents)
        return self._click(agent=agent, headers=self._navigation(agent), burst=self.rng.randint(8, 40))

    def _paid_traffic(self) -> bool:
        agent = self.rng.choice(self.agents)
        return self._click(
            agent=agent,
            headers=self._navigation(agent),
            referrer="https://www.google.com/",
            query={self.rng.choice(PAID), "utm_source"},
            rules=self.no_paid_rules,
        )

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
            signals = self._conversion(
                affiliate_email=f"{local}@gmail.com",
                customer_email=f"{local.replace('.', '').upper()}+{rng.randint(1, 99)}@googlemail.com",
            )
        elif kind == "ip":
            signals = self._conversion(
                customer_ips=base.affiliate_ips | base.customer_ips, affiliate_ips=base.affiliate_ips
            )
        elif kind == "device":
            signals = self._conversion(
                customer_devices=base.affiliate_devices, affiliate_devices=base.affiliate_devices
            )
        else:
            signals = self._conversion(
                customer_visitors=base.affiliate_visitors, affiliate_visitors=base.affiliate_visitors
            )
        return score_conversion(signals, self.rules).action != Action.ALLOW

    def _disposable_email(self) -> bool:
        signals = self._conversion(customer_email=f"x{self.rng.randint(1, 10**6)}@{self.rng.choice(self.disposable)}")
        return score_conversion(signals, self.rules).action != Action.ALLOW


def evaluate(
    per_class: dict[str, int], seed: int = 11, notes: Counter | None = None
) -> tuple[dict[str, float], float, int]:
    """Recall per fraud class, the false-positive rate on legitimate traffic, and the event count.

    ``notes``, when given, receives the clicks of legitimate traffic and cookie stuffing by
    (label, kind of request, caught).
    """
    caught: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    generator = Generator(seed)
    for event in generator.events(per_class):
        total[event.label] += 1
        caught[event.label] += event.caught
    if notes is not None:
        notes.update(generator.notes)
    recall = {label: round(caught[label] / total[label], 4) for label in per_class if label != "legitimate"}
    false_positive_rate = round(caught["legitimate"] / max(total["legitimate"], 1), 4)
    return recall, false_positive_rate, sum(total.values())
