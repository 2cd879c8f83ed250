"""Background money jobs: new conversions become pending commissions, due ones approved, one process at a time."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from affiliate import jobs
from tests.factories import make_admin, make_affiliate, make_program
from tests.money.test_accrual import commissions, report, set_plan


def test_a_round_accrues_new_conversions_and_approves_those_past_their_hold(app):
    program = make_program(app, make_admin(app), hold_days=0)
    set_plan(app, program.id, percent_bps=1_000)
    alice = make_affiliate(app)
    report(app, program, alice.id, "jobs-1", 10_000)
    report(app, program, alice.id, "jobs-2", 5_000, status="flagged")  # waits for review before it earns
    report(app, program, None, "jobs-3", 7_000)  # nobody to credit
    tally, approved = jobs.run_once(app)
    assert (tally.commissions, tally.conversions) == (1, 1)
    assert approved == 1
    assert [(c.amount_cents, c.status) for c in commissions(app)] == [(1_000, "approved")]
    tally, approved = jobs.run_once(app)
    assert (tally.commissions, approved) == (0, 0), "a second round finds nothing new"


def test_conversions_that_earn_nothing_do_not_stop_the_round(app):
    program = make_program(app, make_admin(app), hold_days=30)
    set_plan(app, program.id, percent_bps=0, flat_cents=0)
    alice = make_affiliate(app)
    for n in range(3):
        report(app, program, alice.id, f"free-{n}", 1_000)
    tally, _ = jobs.run_once(app)
    assert tally.commissions == 0 and tally.conversions == 3


def test_only_one_process_runs_the_jobs_at_a_time(app):
    program = make_program(app, make_admin(app))
    set_plan(app, program.id, percent_bps=1_000)
    report(app, program, make_affiliate(app).id, "busy-1")
    fd = os.open(Path(app.instance_path) / jobs.LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process is in a round
        assert jobs.run_once(app) is None
        assert commissions(app) == []
    finally:
        os.close(fd)
    assert jobs.run_once(app) is not None and len(commissions(app)) == 1
