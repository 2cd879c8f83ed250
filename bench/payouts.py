"""Benchmark building a payout batch: 10,000 affiliates over 1,000,000 approved commissions on SQLite.

One run: a fresh migrated SQLite database seeded directly (users, a program, a conversion and an
approved commission per row, each with its accrual and approval in the ledger, exactly as the
accrual service books them), then ``build_batch`` timed through the real service and committed,
then its result checked against the ledger. Prints one JSON line; diagnostics go to stderr.

Usage: .venv/bin/python bench/payouts.py [--affiliates N] [--commissions N] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))

from bench.redirector import migrate, say  # noqa: E402

AFFILIATES = 10_000
COMMISSIONS = 1_000_000
MINIMUM_PAYOUT_CENTS = 5_000
CHUNK = 50_000
SEED = 5


def stamp(value: datetime) -> str:
    """UTC wall time as text, the form the models' UTCDateTime keeps on SQLite."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def seed(database: Path, affiliates: int, commissions: int, now: datetime) -> dict[int, int]:
    """Seed directly with SQL; return each affiliate's approved balance in cents."""
    rng = random.Random(SEED)
    long_ago = stamp(now - timedelta(days=60))
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=OFF")  # seeding only; the timed build runs with the app's settings
    connection.execute("BEGIN")
    connection.execute(
        "INSERT INTO users (id, name, email, password_hash, role, status, referral_code, created_at) "
        "VALUES (1, 'Finance', 'finance@bench.test', 'x', 'finance', 'active', 'FINANCE1', ?)",
        (long_ago,),
    )
    users = []
    for n in range(affiliates):
        affiliate_id = n + 2
        kind = n % 20
        if kind == 0:  # no payout details yet: held
            method, email, name, iban = None, None, None, None
        elif kind < 8:
            method, email, name, iban = "paypal", f"a{affiliate_id}@pay.test", None, None
        elif kind < 14:
            method, email, name, iban = "wise", f"a{affiliate_id}@wise.test", None, None
        else:
            method, email, name, iban = "bank", None, f"Affiliate {affiliate_id}", f"DE89370400440532{affiliate_id:06d}"
        changed = stamp(now - timedelta(hours=10)) if n % 97 == 0 else long_ago  # a few in the cooling-off
        users.append(
            (
                affiliate_id,
                f"Affiliate {affiliate_id}",
                f"a{affiliate_id}@bench.test",
                "x",
                "affiliate",
                "active",
                f"REF{affiliate_id:07d}",
                method,
                email,
                name,
                iban,
                changed,
                long_ago,
            )
        )
    connection.executemany(
        "INSERT INTO users (id, name, email, password_hash, role, status, referral_code, payout_method, payout_email, "
        "payout_account_name, payout_iban, payout_details_changed_at, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        users,
    )
    connection.execute(
        "INSERT INTO programs (id, name, destination_url, allowed_hosts, attribution_window_days, cookie_days, "
        "attribution_model, hold_days, currency, minimum_payout_cents, status, created_at, updated_at) "
        "VALUES (1, 'Bench', 'https://shop.example.com/', 'shop.example.com', 30, 30, 'last_click', 30, 'USD', ?, "
        "'active', ?, ?)",
        (MINIMUM_PAYOUT_CENTS, long_ago, long_ago),
    )
    # Most affiliates earn a little, a few earn a lot: some stay under the minimum.
    weights = [rng.paretovariate(1.2) - 0.95 for _ in range(affiliates)]
    owners = rng.choices(range(2, affiliates + 2), weights=weights, k=commissions)
    balances: dict[int, int] = {}
    transaction_id = 0
    for start in range(0, commissions, CHUNK):
        conversions, rows, transactions, entries = [], [], [], []
        for index in range(start, min(start + CHUNK, commissions)):
            row_id = index + 1
            affiliate_id = owners[index]
            amount = rng.randint(50, 2_000)
            balances[affiliate_id] = balances.get(affiliate_id, 0) + amount
            conversions.append(
                (
                    row_id,
                    1,
                    "sale",
                    f"order-{row_id}",
                    amount * 10,
                    "USD",
                    affiliate_id,
                    "approved",
                    long_ago,
                    long_ago,
                    0,
                )
            )
            rows.append(
                (row_id, affiliate_id, 1, row_id, 1, "10% of sale", amount, "USD", "approved", long_ago, long_ago)
            )
            for kind, debit, credit in (
                ("accrual", "commission_expense", f"affiliate_pending:{affiliate_id}"),
                ("approval", f"affiliate_pending:{affiliate_id}", f"affiliate_payable:{affiliate_id}"),
            ):
                transaction_id += 1
                transactions.append((transaction_id, kind, f"commission:{row_id}", long_ago))
                entries.append(
                    (transaction_id, debit, affiliate_id if debit.startswith("affiliate_") else None, amount, "USD")
                )
                entries.append((transaction_id, credit, affiliate_id, -amount, "USD"))
        connection.executemany(
            "INSERT INTO conversions (id, program_id, type, order_id, amount_cents, currency, affiliate_id, status, "
            "occurred_at, created_at, fraud_score) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            conversions,
        )
        connection.executemany(
            "INSERT INTO commissions (id, affiliate_id, program_id, conversion_id, tier_level, rule, amount_cents, "
            "currency, status, available_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        connection.executemany(
            "INSERT INTO ledger_transactions (id, kind, reference, created_at) VALUES (?, ?, ?, ?)", transactions
        )
        connection.executemany(
            "INSERT INTO ledger_entries (transaction_id, account, affiliate_id, amount_cents, currency) "
            "VALUES (?, ?, ?, ?, ?)",
            entries,
        )
    connection.execute("COMMIT")
    connection.execute("ANALYZE")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return balances


def run(workdir: Path, affiliates: int, commissions: int) -> dict:
    instance = workdir / "instance"
    instance.mkdir()
    database = instance / "bench.db"
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "CLICKTRAIL_INSTANCE")}
    env.update(
        CLICKTRAIL_ENV="development",
        CLICKTRAIL_INSTANCE=str(instance),
        DATABASE_URL=f"sqlite:///{database}",
        SECRET_KEY="bench-secret",  # noqa: S106 - a throwaway database
    )
    migrate(env)
    now = datetime.now(UTC)
    started = time.monotonic()
    balances = seed(database, affiliates, commissions, now)
    say(
        f"seeded {affiliates} affiliates, {commissions} approved commissions and their ledger in "
        f"{time.monotonic() - started:.1f} s"
    )

    os.environ.update(env)
    from sqlalchemy import func, select

    from affiliate import create_app
    from affiliate.extensions import db
    from affiliate.models import Commission, Payout, User
    from affiliate.services.payouts import build_batch

    app = create_app()
    with app.app_context():
        actor = db.session.get(User, 1)
        started = time.monotonic()
        batch, held = build_batch(db.session, "USD", actor=actor, now=now)
        db.session.commit()
        seconds = time.monotonic() - started
        payouts = dict(db.session.execute(select(Payout.affiliate_id, Payout.amount_cents)).all())
        linked = db.session.scalar(select(func.count()).where(Commission.payout_id.is_not(None)))
        batch_total = batch.total_cents if batch else 0
    # The figures must be right, not only fast: every payout is the affiliate's whole approved balance.
    wrong = [affiliate for affiliate, amount in payouts.items() if balances[affiliate] != amount]
    under = sum(1 for amount in balances.values() if amount < MINIMUM_PAYOUT_CENTS)
    say(
        f"batch: {len(payouts)} payouts, total {batch_total} cents, {len(held)} held, {under} under the minimum, "
        f"{linked} commissions linked; built in {seconds:.2f} s"
    )
    if wrong or sum(payouts.values()) != batch_total or len(payouts) + len(held) + under != len(balances):
        raise SystemExit(f"the batch disagrees with the ledger: {len(wrong)} wrong amounts")
    return {
        "bench": "payouts",
        "seconds": round(seconds, 2),
        "affiliates": affiliates,
        "commissions": commissions,
        "payouts": len(payouts),
        "held": len(held),
        "under_minimum": under,
        "database": "sqlite",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--affiliates", type=int, default=AFFILIATES)
    parser.add_argument("--commissions", type=int, default=COMMISSIONS)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="clicktrail-bench-payouts-"))
    try:
        print(json.dumps(run(workdir, args.affiliates, args.commissions)), flush=True)
    finally:
        if args.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
