"""Jobs a portal process runs in the background: money (attribute conversions whose click came late, accrue,
reverse refunds, approve what is due) and retention.

So that a sale reported to the API or a hosted signup becomes a pending commission within
seconds, and a commission is approved by rule once its hold has passed, without a cron entry.
Every process of a server starts the thread on its first request; a lock file beside the
instance lets one of them work at a time. ``MONEY_JOBS_SECONDS=0`` turns it off, for sites that
run ``flask accrue-commissions`` and ``flask approve-due`` from a scheduler instead.

Retention (blurring old IPs and user agents, deleting old raw clicks, as the ``CLICK_*_DAYS``
settings say) runs in the same thread every ``RETENTION_JOBS_SECONDS``. When it last ran is kept
in a stamp file beside its lock, so that however many processes run the thread, the round runs
once per interval and a restart does not start it again early.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path

from flask import Flask

from affiliate.database import retrying
from affiliate.extensions import db
from affiliate.models import utcnow
from affiliate.services import accrual, late_clicks, partitions, retention, rollups
from affiliate.services.accrual import Tally

log = logging.getLogger(__name__)
LOCK_NAME = "money-jobs.lock"
RETENTION_LOCK_NAME = "retention-jobs.lock"
RETENTION_STAMP_NAME = "retention-jobs.last"


def attribute_waiting(*, clock: Callable[[], datetime] = utcnow) -> late_clicks.Swept:
    """Attribute the conversions waiting for a click that is stored by now, and give up on those that waited
    too long, committing per batch."""
    attributed = given_up = 0
    while True:
        swept = late_clicks.sweep(db.session, now=clock())
        db.session.commit()
        attributed, given_up = attributed + swept.attributed, given_up + swept.given_up
        if max(swept.attributed, swept.given_up) < late_clicks.SWEEP_BATCH:
            return late_clicks.Swept(attributed, given_up)


def accrue_all() -> Tally:
    """Evaluate every conversion that waits and reverse every new refund, committing per batch."""
    commissions = conversions = last = 0
    reversed_before = db.session.info.get(accrual.REVERSED, 0)  # evaluating a sale may work some refunds out early
    while batch := accrual.conversions_to_evaluate(db.session, now=utcnow(), after=last):
        for conversion in batch:
            commissions += len(accrual.evaluate_conversion(db.session, conversion, now=utcnow()))
        conversions, last = conversions + len(batch), batch[-1].id
        db.session.commit()
    while refunds := accrual.refunds_to_reverse(db.session):
        for refund in refunds:
            accrual.reverse_for_refund(db.session, refund, now=utcnow())
        db.session.commit()
    return Tally(commissions, conversions, db.session.info.get(accrual.REVERSED, 0) - reversed_before)


def approve_due(*, days_ahead: int = 0) -> int:
    """Approve by rule the pending commissions whose hold has passed, and commit."""
    approved = accrual.approve_due(db.session, now=utcnow() + timedelta(days=days_ahead))
    db.session.commit()
    return approved


def run_once(app: Flask) -> tuple[Tally, int] | None:
    """One round of the jobs, unless another process is doing them; returns what was done."""
    fd = os.open(Path(app.instance_path) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        with app.app_context():
            try:
                make_months_if_due()
                retrying(db.session, attribute_waiting)
                tally = retrying(db.session, accrue_all)
                approved = retrying(db.session, approve_due)
            finally:
                db.session.remove()
        return tally, approved
    finally:
        os.close(fd)


_months_due = 0.0


def make_months_if_due() -> None:
    """Once an hour per process, make the clicks table's coming month partitions (PostgreSQL), as the ingester
    does: a site whose redirector runs elsewhere still has its months made."""
    global _months_due
    if time.monotonic() < _months_due:
        return
    _months_due = time.monotonic() + partitions.CHECK_SECONDS
    partitions.ensure_months(db.session.connection(), now=utcnow())
    db.session.commit()


def policy_of(config) -> retention.Policy:
    """The retention policy the settings give."""
    return retention.Policy(
        retention_days=config["CLICK_RETENTION_DAYS"],
        ip_days=config["CLICK_IP_DAYS"],
        ip_mode=config["CLICK_IP_MODE"],
        user_agent_days=config["CLICK_USER_AGENT_DAYS"],
        user_agent_mode=config["CLICK_USER_AGENT_MODE"],
    )


def purge_clicks(
    policy: retention.Policy,
    *,
    clock: Callable[[], datetime] = utcnow,
    dry_run: bool = False,
    progress: Callable[[Iterable[int]], Iterable[int]] = iter,
) -> tuple[retention.Cutoffs, retention.Counts]:
    """Apply the policy to every raw click, one short transaction per window of ids.

    Raises rollups.MaintenanceBusy when a rollup rebuild (or another purge) runs: deleting clicks
    while a rebuild recounts them would lose their counts.
    """
    now = clock()
    limits = retention.cutoffs(db.session, policy, now=now)
    low, high = retention.id_range(db.session)
    db.session.commit()
    token = None
    if limits.purge_before and not dry_run:
        try:
            token = rollups.take_lease(db.session, now=now)
        except rollups.MaintenanceBusy:
            db.session.rollback()
            raise
        retention.mark_purged(db.session, limits.purge_before)
        db.session.commit()
    counts = retention.Counts()
    if token:
        # Whole months first, as partitions (PostgreSQL): what is left is purged row by row below. A dry run
        # counts everything row by row, which comes to the same figures.
        counts.deleted += partitions.drop_months_before(db.session.connection(), limits.purge_before).deleted
        db.session.commit()
    try:
        for start in progress(range(low, high + 1, retention.WINDOW)):
            counts.add(
                retention.apply_window(db.session, policy, limits, start, start + retention.WINDOW - 1, dry_run=dry_run)
            )
            if token:
                rollups.renew_lease(db.session, token, now=clock())
            if dry_run:
                db.session.rollback()
            else:
                db.session.commit()
    finally:
        db.session.rollback()
        if token:
            rollups.release_lease(db.session, token)
            db.session.commit()
    return limits, counts


def run_retention(app: Flask, *, clock: Callable[[], datetime] = utcnow) -> retention.Counts | None:
    """One retention round if RETENTION_JOBS_SECONDS have passed since the last (in any process); what it did.

    None when it was not due, another process is in a round, the settings keep everything, or a
    rollup rebuild holds the clicks (the next round tries again).
    """
    interval = timedelta(seconds=float(app.config.get("RETENTION_JOBS_SECONDS") or 0))
    policy = policy_of(app.config)
    if not policy.anything:
        return None
    instance = Path(app.instance_path)
    fd = os.open(instance / RETENTION_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        stamp = instance / RETENTION_STAMP_NAME
        last = _read_stamp(stamp)
        now = clock()
        if last is not None and now < last + interval:
            return None
        with app.app_context():
            try:
                _, counts = purge_clicks(policy, clock=clock)
            except rollups.MaintenanceBusy:
                log.info("retention round skipped: a rollup rebuild or purge holds the clicks")
                return None
            finally:
                db.session.remove()
        _write_stamp(stamp, now)
        return counts
    finally:
        os.close(fd)


def _read_stamp(path: Path) -> datetime | None:
    try:
        return datetime.fromisoformat(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _write_stamp(path: Path, when: datetime) -> None:
    spare = path.with_suffix(".tmp")
    spare.write_text(when.isoformat())
    os.replace(spare, path)


def in_context(app: Flask, send_round: Callable[[], tuple[int, int]]) -> tuple[int, int]:
    """One round of a sender (mail, webhooks) in an app context of its own: (sent, failed)."""
    with app.app_context():
        try:
            return send_round()
        finally:
            db.session.remove()


def start_senders(app: Flask) -> None:
    """Send the outbox (once SMTP_HOST is set) and the webhook deliveries from threads of this process.

    Every process runs them; claims keep two senders off the same message. A sender that found work looks
    again at once; an idle or failing one waits its interval.
    """
    from affiliate import delivery, mail

    senders = (
        (
            "mail-sender",
            float(app.config.get("MAIL_SENDER_SECONDS") or 0) if app.config.get("SMTP_HOST") else 0,
            mail.send_due,
        ),
        ("webhook-sender", float(app.config.get("DELIVERY_SENDER_SECONDS") or 0), delivery.send_due),
    )
    for name, interval, send_round in senders:
        if interval > 0:
            start_on_first_request(app, name, _sender_loop(app, name, interval, send_round))


def _sender_loop(app: Flask, name: str, interval: float, send_round: Callable[[], tuple[int, int]]):
    def loop() -> None:
        while True:
            try:
                sent, failed = in_context(app, send_round)
            except Exception:
                log.exception("%s failed; trying again in %s s", name, interval)
                sent = failed = 0
            if not sent or failed:
                threading.Event().wait(interval)

    return loop


def init_app(app: Flask) -> None:
    """Start the jobs' thread on this process's first request, if MONEY_ or RETENTION_JOBS_SECONDS is above zero."""
    start_senders(app)
    money = float(app.config.get("MONEY_JOBS_SECONDS") or 0)
    keeping = float(app.config.get("RETENTION_JOBS_SECONDS") or 0)
    if money <= 0 and keeping <= 0:
        return
    # The thread wakes often enough for the money jobs; retention checks its own stamp on each wake.
    interval = min(seconds for seconds in (money, keeping) if seconds > 0)

    def loop() -> None:
        while True:
            if money > 0:
                try:
                    run_once(app)
                except Exception:
                    log.exception("money jobs failed; trying again in %s s", interval)
            if keeping > 0:
                try:
                    run_retention(app)
                except Exception:
                    log.exception("retention round failed; trying again in %s s", interval)
            threading.Event().wait(interval)

    start_on_first_request(app, "money-jobs", loop)


def start_on_first_request(app: Flask, name: str, loop: Callable[[], None]) -> None:
    """Run ``loop`` in a daemon thread of this process, started by its first request (after a server forks)."""
    started = threading.Event()
    lock = threading.Lock()

    def start() -> None:
        if started.is_set():
            return
        with lock:
            if not started.is_set():
                threading.Thread(target=loop, name=name, daemon=True).start()
                started.set()

    app.before_request(start)
