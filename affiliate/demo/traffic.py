"""Demo traffic for `flask seed-demo`: clicks sent through the real redirector, sales through the conversion service."""

from __future__ import annotations

import random
import threading
from datetime import datetime, timedelta

from sqlalchemy import select
from werkzeug.test import Client

from affiliate.models import Click, ConversionType, User
from affiliate.services.conversions import ConversionRequest, record_conversion

# Real browser strings, long by nature.
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 12; Redmi Note 11) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
)  # fmt: skip
BOT_AGENTS = (
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "curl/8.5.0",
)
# Public networks with a known place in the GeoLite2 data (GB, US, DE, NL, JP, BR, AU, FR, CA, IN).
NETWORKS = (
    "81.2.69.", "8.8.8.", "5.9.10.", "91.198.174.", "133.242.0.", "200.160.2.", "1.1.1.", "212.27.48.",
    "24.48.0.", "49.44.3.",
)  # fmt: skip
REFERRERS = (
    "https://blog.example.org/best-kitchen-gadgets",
    "https://www.instagram.com/",
    "https://t.co/",
    "https://www.youtube.com/",
    None,
    None,
)
LANGUAGES = ("en-US,en;q=0.9", "en-GB,en;q=0.8", "de-DE,de;q=0.9", "ja-JP", "pt-BR,pt;q=0.9", "fr-FR,fr;q=0.8")


def send_demo_clicks(redirector_factory, codes: list[str], count: int, now: datetime, seed: int = 2026) -> int:
    """Send ``count`` clicks spread over the last 30 days through a redirector; return how many landed.

    ``redirector_factory(clock)`` builds the redirector with a clock that hands out the demo times.
    Visitors come back now and then (same cookie), some traffic is bots, most is human.
    """
    rng = random.Random(seed)
    times = sorted(now - timedelta(seconds=rng.randint(0, 30 * 86400)) for _ in range(count))
    clock_lock = threading.Lock()
    position = iter(times)

    def clock() -> datetime:
        with clock_lock:
            return next(position)

    redirector = redirector_factory(clock)
    visitors: list[tuple[Client, str, str, str]] = []
    landed = 0
    try:
        for _ in range(count):
            if visitors and rng.random() < 0.25:
                browser, agent, ip, language = rng.choice(visitors)
            else:
                browser = Client(redirector)
                agent = rng.choice(BOT_AGENTS) if rng.random() < 0.06 else rng.choice(USER_AGENTS)
                ip = rng.choice(NETWORKS) + str(rng.randint(1, 254))
                language = rng.choice(LANGUAGES)
                visitors.append((browser, agent, ip, language))
            code = rng.choice(codes)
            query = "?utm_source=demo" if rng.random() < 0.3 else ""
            headers = {"User-Agent": agent, "Accept-Language": language}
            referrer = rng.choice(REFERRERS)
            if referrer:
                headers["Referer"] = referrer
            response = browser.get(f"/r/{code}{query}", headers=headers, environ_base={"REMOTE_ADDR": ip})
            landed += response.status_code == 302
    finally:
        redirector.close()
    return landed


def record_demo_conversions(session, program, now: datetime, seed: int = 2026) -> dict[str, int]:
    """Report demo sales through the real conversion service, attributed to demo clicks.

    Most are ordinary (minutes to days after their click); a few are there for the review queue:
    sales seconds after their click (flagged: too fast), sales to the affiliate's own address
    (rejected: self-referral) and to disposable addresses (flagged). Returns counts per status.
    """
    rng = random.Random(seed)
    clicks = session.scalars(
        select(Click).where(Click.program_id == program.id, Click.is_bot.is_(False), Click.fraud_action.is_(None))
    ).all()
    picked = rng.sample(clicks, min(len(clicks), 60))
    statuses: dict[str, int] = {}
    for n, click in enumerate(picked):
        affiliate = session.get(User, click.affiliate_id)
        delay = timedelta(seconds=3) if n % 15 == 0 else timedelta(minutes=rng.randint(5, 4 * 24 * 60))
        email = f"shopper{n}@example.com"
        if n % 20 == 7:
            email = affiliate.email  # the affiliate buying through their own link
        elif n % 20 == 13:
            email = f"deal{n}@mailinator.com"
        report = ConversionRequest(
            type=ConversionType.SALE,
            order_id=f"DEMO-{1000 + n}",
            amount_cents=rng.choice((1999, 2999, 4999, 8900, 12900)),
            currency=program.currency,
            customer_external_id=f"demo-customer-{n}",
            customer_email=email,
            click_id=click.click_id,
            occurred_at=min(click.clicked_at + delay, now),
        )
        # Reported as it happened, so that the demo history has holds that have already passed.
        conversion = record_conversion(session, program, report, now=report.occurred_at).conversion
        statuses[conversion.status] = statuses.get(conversion.status, 0) + 1
    return statuses
