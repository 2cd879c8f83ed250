"""Benchmark building a payout batch: 10,000 affiliates over 1,000,000 approved commissions, on both databases.

Per database: a copy of the cached world (bench/common.py), seeded directly through the bulk path
(users, a program, a conversion and an approved commission per row, each with its accrual and
approval in the ledger, exactly as the accrual service books them), a settled machine, one warm-up
``build_batch`` rolled back, then ``build_batch`` timed through the real service and committed, and
its result checked against the ledger. Prints one JSON line per database; diagnostics go to stderr.

Usage: .venv/bin/python bench/payouts.py [--database sqlite|postgresql|both] [--affiliates N] [--commissions N]
       [--keep]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]
    sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from bench.common import say  # noqa: E402

AFFILIATES = 10_000
COMMISSIONS = 1_000_000
MINIMUM_PAYOUT_CENTS = 5_000
CHUNK = 50_000
SEED = 5
SECONDS_TARGET = 3.0


def seed(url: str, affiliates: int, commissions: int, now: datetime) -> None:
    """Seed directly through the database's bulk path (COPY on PostgreSQL)."""
    with common.connect(url) as connection:
        if url.startswith("sqlite"):
            connection.execute("PRAGMA synchronous=OFF")  # seeding only; the timed build runs with the app's settings
        # A transaction per chunk: the triggers that keep the money rollups update the same few thousand rows
        # for every commission, and PostgreSQL can only prune those rows' old versions between transactions
        # (in one transaction the seed slows down with every chunk, for the better part of an hour).
        _seed(connection, affiliates, commissions, now)
        if not url.startswith("sqlite"):
            # Rows were written with their ids: the sequences must continue after them.
            for table in ("users", "programs", "conversions", "commissions", "ledger_transactions"):
                connection.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"  # noqa: S608
                )


def _seed(connection, affiliates: int, commissions: int, now: datetime) -> None:
    rng = random.Random(SEED)
    long_ago = now - timedelta(days=60)
    with common.transaction(connection):
        _seed_people(connection, affiliates, now, long_ago)
    # Most affiliates earn a little, a few earn a lot: some stay under the minimum.
    weights = [rng.paretovariate(1.2) - 0.95 for _ in range(affiliates)]
    owners = rng.choices(range(2, affiliates + 2), weights=weights, k=commissions)
    transaction_id = 0
    for start in range(0, commissions, CHUNK):
        with common.transaction(connection):
            end = min(start + CHUNK, commissions)
            transaction_id = _seed_chunk(connection, rng, owners, start, end, transaction_id, long_ago)


def _seed_people(connection, affiliates: int, now: datetime, long_ago: datetime) -> None:
    common.bulk_insert(
        connection,
        "users",
        ("id", "name", "email", "password_hash", "role", "status", "referral_code", "created_at"),
        [(1, "Finance", "finance@bench.test", "x", "finance", "active", "FINANCE1", long_ago)],
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
        changed = now - timedelta(hours=10) if n % 97 == 0 else long_ago  # a few in the cooling-off
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
    common.bulk_insert(
        connection,
        "users",
        (
            "id",
            "name",
            "email",
            "password_hash",
            "role",
            "status",
            "referral_code",
            "payout_method",
            "payout_email",
            "payout_account_name",
            "payout_iban",
            "payout_details_changed_at",
            "created_at",
        ),
        users,
    )
    common.bulk_insert(
        connection,
        "programs",
        (
            "id",
            "name",
            "destination_url",
            "allowed_hosts",
            "attribution_window_days",
            "cookie_days",
            "attribution_model",
            "hold_days",
            "currency",
            "minimum_payout_cents",
            "status",
            "created_at",
            "updated_at",
        ),
        [
            (
                1,
                "Bench",
                "https://shop.example.com/",
                "shop.example.com",
                30,
                30,
                "last_click",
                30,
                "USD",
                MINIMUM_PAYOUT_CENTS,
                "active",
                long_ago,
                long_ago,
            )
        ],
    )


def _seed_chunk(
    connection, rng: random.Random, owners: list[int], start: int, end: int, transaction_id: int, long_ago: datetime
) -> int:
    """Commissions ``start`` to ``end``, their conversions and ledger rows; return the last ledger transaction id."""
    conversions, rows, transactions, entries = [], [], [], []
    for index in range(start, end):
        row_id = index + 1
        affiliate_id = owners[index]
        amount = rng.randint(50, 2_000)
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
        rows.append((row_id, affiliate_id, 1, row_id, 1, "10% of sale", amount, "USD", "approved", long_ago, long_ago))
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
    for table, columns, values in (
        ("conversions", ("id", "program_id", "type", "order_id", "amount_cents", "currency", "affiliate_id",
                         "status", "occurred_at", "created_at", "fraud_score"), conversions),
        ("commissions", ("id", "affiliate_id", "program_id", "conversion_id", "tier_level", "rule",
                         "amount_cents", "currency", "status", "available_at", "created_at"), rows),
        ("ledger_transactions", ("id", "kind", "reference", "created_at"), transactions),
        ("ledger_entries", ("transaction_id", "account", "affiliate_id", "amount_cents", "currency"), entries),
    ):  # fmt: skip
        common.bulk_insert(connection, table, columns, values)
    return transaction_id


def payouts_world(database: str, affiliates: int, commissions: int, workdir: Path) -> common.World:
    def build(url: str, instance: Path, env: dict[str, str]) -> dict:
        started = time.monotonic()
        seed(url, affiliates, commissions, datetime.now(UTC))
        say(f"seeded {affiliates} affiliates, {commissions} approved commissions and their ledger in "
            f"{time.monotonic() - started:.1f} s")  # fmt: skip
        return {}

    params = {"affiliates": affiliates, "commissions": commissions, "minimum": MINIMUM_PAYOUT_CENTS, "seed": SEED}
    return common.world(database, "payouts", params, build, workdir)


def measure(database: str, affiliates: int, commissions: int, workdir: Path) -> dict:
    workdir = workdir / database
    workdir.mkdir()
    world = payouts_world(database, affiliates, commissions, workdir)
    try:
        return _measure(world, affiliates, commissions)
    finally:
        world.dispose()


def _measure(world: common.World, affiliates: int, commissions: int) -> dict:
    from sqlalchemy import func, select

    from affiliate.extensions import db
    from affiliate.models import Commission, Payout, User
    from affiliate.services.payouts import build_batch
    from config import DevelopmentConfig

    with common.connect(world.url) as connection:
        query = (
            "SELECT affiliate_id, SUM(amount_cents) FROM commissions WHERE status = 'approved' GROUP BY affiliate_id"
        )
        balances = dict(connection.execute(query).fetchall())
    overrides = {"INSTANCE_PATH": str(world.instance), "SQLALCHEMY_DATABASE_URI": world.url, "SECRET_KEY": "bench"}
    app = common.portal_app(DevelopmentConfig, overrides)
    settled = common.settle(f"payouts on {world.database}", warm_note="one warm-up build, rolled back")
    with app.app_context():
        actor = db.session.get(User, 1)
        now = datetime.now(UTC)
        started = time.monotonic()
        build_batch(db.session, "USD", actor=actor, now=now)
        db.session.rollback()
        say(f"warm-up build (rolled back) in {time.monotonic() - started:.2f} s")
        actor = db.session.get(User, 1)
        started = time.monotonic()
        batch, held = build_batch(db.session, "USD", actor=actor, now=now)
        db.session.commit()
        seconds = time.monotonic() - started
        payouts = dict(db.session.execute(select(Payout.affiliate_id, Payout.amount_cents)).all())
        linked = db.session.scalar(select(func.count()).where(Commission.payout_id.is_not(None)))
        batch_total = batch.total_cents if batch else 0
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()
    # The figures must be right, not only fast: every payout is the affiliate's whole approved balance.
    wrong = [affiliate for affiliate, amount in payouts.items() if balances[affiliate] != amount]
    under = sum(1 for amount in balances.values() if amount < MINIMUM_PAYOUT_CENTS)
    say(
        f"batch on {world.database}: {len(payouts)} payouts, total {batch_total} cents, {len(held)} held, "
        f"{under} under the minimum, {linked} commissions linked; built in {seconds:.2f} s"
    )
    if wrong or sum(payouts.values()) != batch_total or len(payouts) + len(held) + under != len(balances):
        raise RuntimeError(f"the batch disagrees with the ledger: {len(wrong)} wrong amounts")
    return {
        "bench": "payouts",
        "database": world.database,
        "seconds": round(seconds, 2),
        **common.target(round(seconds, 2), SECONDS_TARGET, under=True),
        "affiliates": affiliates,
        "commissions": commissions,
        "payouts": len(payouts),
        "held": len(held),
        "under_minimum": under,
        "setup_seconds": round(world.setup_seconds, 1),
        **settled,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--affiliates", type=int, default=common.quick(AFFILIATES, 500))
    parser.add_argument("--commissions", type=int, default=common.quick(COMMISSIONS, 20_000))
    common.add_database_argument(parser)
    args = parser.parse_args(argv)
    return common.run_in_workdir(
        args, "payouts", lambda database, workdir: [measure(database, args.affiliates, args.commissions, workdir)]
    )


if __name__ == "__main__":
    sys.exit(main())
