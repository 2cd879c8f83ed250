"""Data retention for raw clicks: blur old IP addresses and user agents, delete old clicks, keep what money needs.

- **IP addresses** older than ``CLICK_IP_DAYS``: ``truncate`` keeps the /24 (IPv4) or /48 (IPv6)
  network address, ``drop`` clears it. The keyed hash and the network (``ip_hash``, ``ip_prefix``)
  stay: they are the forms meant to be kept.
- **User agents** older than ``CLICK_USER_AGENT_DAYS``: ``truncate`` keeps the leading product
  token ("Mozilla/5.0", "curl/8.5.0"), ``drop`` clears it. The device, OS, browser and bot flag
  parsed from it stay.
- **Clicks** older than ``CLICK_RETENTION_DAYS`` are deleted, except those a conversion or a
  referral points at: they are the evidence for money paid, and the foreign keys that keep them.
  Rollups are never touched, so reports keep every day's counts; the purged days are recorded
  so that a rollup rebuild keeps their rollups instead of recounting what is left.

The purge cutoff is a UTC midnight and never later than the longest attribution window of any
program, nor the 30 days fraud screening looks back: a click that could still win a conversion,
or count in an affiliate's fraud history, is never deleted. IP addresses are held back the same
way: the self-referral rule compares a conversion's customer with its click's IP when the
conversion arrives, which can be as late as the click's attribution window allows.

The work goes through the clicks table in ranges of ids, one short transaction each (the
caller commits), so the ingester is never held up for long, and every row is read once.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import and_, bindparam, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session

from affiliate.models import Click, Conversion, Program, Referral, RollupState
from affiliate.services.rollups import STATE_ID
from affiliate.services.screening import HISTORY_DAYS
from config import MAX_RETENTION_DAYS

MODES = ("truncate", "drop")
WINDOW = 10_000  # click ids per transaction


@dataclass(frozen=True)
class Policy:
    """How long raw click data is kept; 0 days keeps it for good."""

    retention_days: int = 0
    ip_days: int = 0
    ip_mode: str = "truncate"
    user_agent_days: int = 0
    user_agent_mode: str = "truncate"

    @property
    def anything(self) -> bool:
        return bool(self.retention_days or self.ip_days or self.user_agent_days)


@dataclass(frozen=True)
class Cutoffs:
    purge_before: datetime | None  # a UTC midnight
    ip_before: datetime | None
    user_agent_before: datetime | None
    floor_days: int  # raw clicks are always kept this long


@dataclass
class Counts:
    deleted: int = 0
    kept: int = 0  # old enough to delete, but a conversion or referral points at them
    ips: int = 0
    user_agents: int = 0

    def add(self, other: Counts) -> None:
        self.deleted += other.deleted
        self.kept += other.kept
        self.ips += other.ips
        self.user_agents += other.user_agents


def cutoffs(session: Session, policy: Policy, *, now: datetime) -> Cutoffs:
    """When each kind of data becomes old, held back for as long as a conversion may still be credited to a click.

    That is two of the longest attribution windows: a merchant may report a sale up to one window after it
    happened (back-dated), and that sale is credited to a click up to one window before it.
    """
    longest = session.scalar(select(func.max(Program.attribution_window_days))) or 0
    floor_days = max(2 * longest, HISTORY_DAYS)
    policy = replace(
        policy,
        retention_days=min(policy.retention_days, MAX_RETENTION_DAYS),
        ip_days=min(policy.ip_days, MAX_RETENTION_DAYS),
        user_agent_days=min(policy.user_agent_days, MAX_RETENTION_DAYS),
    )
    purge_before = None
    if policy.retention_days:
        midnight = datetime.combine(now.astimezone(UTC).date(), time.min, tzinfo=UTC)
        purge_before = midnight - timedelta(days=max(policy.retention_days, floor_days))
    return Cutoffs(
        purge_before=purge_before,
        ip_before=now - timedelta(days=max(policy.ip_days, floor_days)) if policy.ip_days else None,
        user_agent_before=now - timedelta(days=policy.user_agent_days) if policy.user_agent_days else None,
        floor_days=floor_days,
    )


def id_range(session: Session) -> tuple[int, int]:
    """The lowest and highest click id (0, 0 without clicks)."""
    low, high = session.execute(select(func.min(Click.id), func.max(Click.id))).one()
    return (low or 0), (high or 0)


def mark_purged(session: Session, purge_before: datetime) -> date:
    """Record, before deleting, that raw clicks before this day may be gone (a rebuild then keeps its rollups)."""
    day = purge_before.date()
    current = session.scalar(select(RollupState.purged_before).where(RollupState.id == STATE_ID))
    if current is None or current < day:
        session.execute(update(RollupState).where(RollupState.id == STATE_ID).values(purged_before=day))
    return max(day, current) if current else day


def apply_window(
    session: Session, policy: Policy, limits: Cutoffs, low: int, high: int, *, dry_run: bool = False
) -> Counts:
    """Purge, then blur, the clicks with ids in [low, high]; with ``dry_run`` only count what would change."""
    counts = Counts()
    window = and_(Click.id >= low, Click.id <= high)
    if limits.purge_before is not None:
        # Each EXISTS reads only the indexed column: with "SELECT *" SQLite's planner, given statistics where
        # most conversions have no click, scanned every conversion for every click of the window.
        evidence = or_(
            exists(Conversion.click_id).where(Conversion.click_id == Click.id),
            exists(Referral.click_id).where(Referral.click_id == Click.id),
        )
        old = and_(window, Click.clicked_at < limits.purge_before)
        counts.kept = session.scalar(select(func.count()).where(old, evidence))
        if dry_run:
            counts.deleted = session.scalar(select(func.count()).where(old, ~evidence))
        else:
            counts.deleted = session.execute(
                delete(Click).where(old, ~evidence).execution_options(synchronize_session=False)
            ).rowcount
    if limits.ip_before is not None:
        counts.ips = _blur(session, window, limits.ip_before, Click.ip, blur_ip, policy.ip_mode, dry_run)
    if limits.user_agent_before is not None:
        counts.user_agents = _blur(
            session,
            window,
            limits.user_agent_before,
            Click.user_agent,
            blur_user_agent,
            policy.user_agent_mode,
            dry_run,
        )
    return counts


def blur_ip(ip: str, mode: str) -> str | None:
    """An address cut to its /24 (IPv4) or /48 (IPv6) network address, or None to drop it (or if unreadable)."""
    if mode == "drop":
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    bits = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False).network_address)


def blur_user_agent(user_agent: str, mode: str) -> str | None:
    """A user agent cut to its leading product token ("Mozilla/5.0"), or None to drop it."""
    if mode == "drop":
        return None
    token = user_agent.strip().split(" ", 1)[0].split("(", 1)[0]
    return token[:64] or None


def _blur(session: Session, window, before: datetime, column, blur, mode: str, dry_run: bool) -> int:
    """Replace the column's old values in the window with their blurred form; return how many changed."""
    old = (window, Click.clicked_at < before, column.is_not(None), *_unblurred(column, mode))
    rows = session.execute(select(Click.id, column).where(*old)).all()
    changes = [{"key": click_id, "value": blur(value, mode)} for click_id, value in rows]
    changes = [change for change, (_, value) in zip(changes, rows, strict=True) if change["value"] != value]
    if changes and not dry_run:
        session.connection().execute(
            update(Click.__table__)
            .where(Click.__table__.c.id == bindparam("key"))
            .values({column.key: bindparam("value")}),
            changes,
        )
    return len(changes)


def _unblurred(column, mode: str) -> tuple:
    """Conditions that pass over most values blurred before, so that a scheduled round re-reads few of them.

    A truncated user agent is one token: no space, no parenthesis, at most 64 characters. A truncated IPv4
    address is its /24 network, ending in ".0" (as does any IPv4 address that truncating leaves as it is).
    Whatever passes is still compared with its blurred form in Python, so these only save reading.
    """
    if mode != "truncate":
        return ()
    if column is Click.user_agent:
        return (or_(column.contains(" "), column.contains("("), func.length(column) > 64, func.length(column) == 0),)
    return (~and_(column.like("%.0"), ~column.contains(":")),)
