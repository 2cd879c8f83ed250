"""Money jobs a portal process runs in the background: accrue new conversions, reverse refunds, approve what is due.

So that a sale reported to the API or a hosted signup becomes a pending commission within
seconds, and a commission is approved by rule once its hold has passed, without a cron entry.
Every process of a server starts the thread on its first request; a lock file beside the
instance lets one of them work at a time. ``MONEY_JOBS_SECONDS=0`` turns it off, for sites that
run ``flask accrue-commissions`` and ``flask approve-due`` from a scheduler instead.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path

from flask import Flask

from affiliate.extensions import db
from affiliate.models import utcnow
from affiliate.services import accrual
from affiliate.services.accrual import Tally

log = logging.getLogger(__name__)
LOCK_NAME = "money-jobs.lock"


def accrue_all() -> Tally:
    """Evaluate every conversion that waits and reverse every new refund, committing per batch."""
    commissions = conversions = last = 0
    while batch := accrual.conversions_to_evaluate(db.session, after=last):
        for conversion in batch:
            commissions += len(accrual.evaluate_conversion(db.session, conversion, now=utcnow()))
        conversions, last = conversions + len(batch), batch[-1].id
        db.session.commit()
    reversed_cents = 0
    while refunds := accrual.refunds_to_reverse(db.session):
        reversed_cents += sum(accrual.reverse_for_refund(db.session, refund, now=utcnow()) for refund in refunds)
        db.session.commit()
    return Tally(commissions, conversions, reversed_cents)


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
                tally = accrue_all()
                approved = accrual.approve_due(db.session, now=utcnow())
                db.session.commit()
            finally:
                db.session.remove()
        return tally, approved
    finally:
        os.close(fd)


def init_app(app: Flask) -> None:
    """Start the jobs' thread on this process's first request, when MONEY_JOBS_SECONDS is above zero."""
    interval = float(app.config.get("MONEY_JOBS_SECONDS") or 0)
    if interval <= 0:
        return
    started = threading.Event()
    lock = threading.Lock()

    def loop() -> None:
        while True:
            try:
                run_once(app)
            except Exception:
                log.exception("money jobs failed; trying again in %s s", interval)
            threading.Event().wait(interval)

    @app.before_request
    def start_money_jobs() -> None:
        if started.is_set():
            return
        with lock:
            if not started.is_set():
                threading.Thread(target=loop, name="money-jobs", daemon=True).start()
                started.set()
