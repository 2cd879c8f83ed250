"""One click on its way from the redirect to its row: the keys recorded, and how long the way may take.

The request side builds a ``LoggedClick`` and appends it to the click log (``clicked_at`` as ISO
text there); the ingester reads it back as a ``ClickRecord``, fills in device and geo, judges
uniqueness and fraud, and inserts it as one row of ``clicks`` (its keys are the table's columns,
but ``id``). Both are plain dicts at run time: the types cost the request nothing.

This module imports nothing of the project, so the portal's services and every part of the
redirector may import it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict

# How long a click's row may take to reach the database after its redirect was answered, and so how long a
# conversion naming a click issued moments ago waits for it (affiliate.services.conversions.CLICK_PATIENCE).
# A request process hands its click log segment on every half second, and the first clicks after a server starts
# may wait for an ingester process to start: 5 s covers both. The ingester holds clicks back for a small part of
# it (redirector.ingester.MAX_LAG_SECONDS), so a loaded machine still has time to store them.
CLICK_PATIENCE_SECONDS = 5.0

# The PostgreSQL advisory lock every ingester (of every redirector node) holds exclusively from before it looks
# up the conversions waiting for its batch until the batch commits (one per lane, below). A conversion about to
# be stored waiting for its click holds them all shared, then looks for the click once more: it either sees the
# batch's clicks or is seen by the batch, never neither. Any number, the same in every process.
INGEST_TURN_KEY = 0x436C6963
# On PostgreSQL an ingester stores a batch as this many transactions side by side, its clicks split by
# affiliate, each lane with a turn (the advisory lock INGEST_TURN_KEY, lane) of its own. The same in every
# process: a lane's clicks must be judged in turn with that lane's clicks from every node.
INGEST_LANES = 2


class LoggedClick(TypedDict):
    """A click as the request records it in the click log: what the request itself tells."""

    link_id: int  # the link clicked
    affiliate_id: int  # the link's affiliate, who earns from the click
    program_id: int  # the link's program, whose fraud rules judge the click
    ip: str | None  # the client's address (normalised), after the trusted proxies' hops
    ip_hash: str | None  # HMAC-SHA256 of the address under the app's secret: matched without reading it
    ip_prefix: str | None  # the address's /24 (IPv4) or /48 (IPv6) network
    user_agent: str | None  # the User-Agent header, cut to enrich.USER_AGENT_MAX
    is_bot: bool  # a bot reason is known (the ingester adds the user agent's)
    bot_reason: str | None  # why the request is not a person's click ("head_request", "prefetch", ...)
    referrer: str | None  # the Referer header, cut to 2,048 characters
    sub1: str | None  # the affiliate's sub-IDs: from the query, else the link's own
    sub2: str | None
    sub3: str | None
    sub4: str | None
    sub5: str | None
    sec_fetch: str | None  # the Sec-Fetch-Site/Mode/Dest/User headers as "site/mode/dest/user"; None when none sent
    paid_click: str | None  # the ad click id parameters the query carries, as "gclid,fbclid"
    fingerprint: str  # a hash of what the browser sends alike on every visit (enrich.fingerprint)
    is_unique: bool  # True here; the ingester decides it against the stored clicks
    fraud_score: int  # 0, or 100 for a click rejected when made (the ingester then scores the rest)
    fraud_action: str | None  # None, or "reject" for a click rejected when made (an inactive affiliate)
    fraud_reasons: str | None  # JSON list of the rules that fired; the rejection's when rejected when made
    click_id: str  # the id handed to the shopper and the merchant (affiliate.ids.new_id; it tells when issued)
    visitor_id: str  # the visitor cookie's id, new when the browser had none
    clicked_at: datetime  # when the redirect was answered (UTC)


class ClickRecord(LoggedClick):
    """A click as the ingester stores it: the logged facts, device and geo filled in, judged."""

    device_type: str | None  # "desktop", "mobile", "tablet", "bot" or "other", from the user agent
    device_brand: str | None  # from the user agent
    device_model: str | None  # from the user agent
    os: str | None  # the operating system's family, from the user agent
    browser: str | None  # the browser's family, from the user agent
    country: str | None  # ISO 3166 code of the address's country (GeoIP)
    region: str | None  # the address's most specific subdivision (GeoIP)
    city: str | None  # the address's city (GeoIP)
