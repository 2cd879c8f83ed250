"""A damaged click log never holds up the clicks around the damage.

Records are written by the redirector itself, so a bad one comes from a damaged disk block or another writer:
a record that is valid JSON but not a click, a block of zeros between records, a value the database refuses.
Before, one such record made every batch it was in fail as if the database were down, so that segment and every
later one stayed in the log for good; a block of zeros hid the records after it. Now the good records are
stored, and a record that cannot be is set aside, with why, in ``rejected-clicks.jsonl`` beside the log, to be
offered again by ``flask ingest-clicks --rejected``.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
from sqlalchemy import select

from affiliate.extensions import db
from affiliate.models import Click
from redirector.clickstore import REJECTED_NAME
from tests.redirector.helpers import setup_link


def record(s, n: int, **changes) -> dict:
    return {
        "click_id": f"01M8DAMAGEDLOG{n:018d}",
        "link_id": s.link.id,
        "affiliate_id": s.affiliate.id,
        "program_id": s.program.id,
        "clicked_at": "2026-11-24T01:00:00+00:00",
        "is_bot": False,
        "visitor_id": f"01M8VISITOR{n:020d}",
        "fingerprint": "f" * 32,
        "fraud_score": 0,
        "is_unique": True,
        **changes,
    }


def stored_ids(app) -> set[str]:
    with app.app_context():
        return set(db.session.scalars(select(Click.click_id)))


def test_damaged_records_are_set_aside_and_every_good_one_is_stored(app, runner):
    s = setup_link(app)
    log_dir = Path(app.config["CLICK_LOG_DIR"])
    log_dir.mkdir(parents=True, exist_ok=True)
    good = [record(s, n) for n in range(6)]
    long_paid = record(s, 90, paid_click=",".join(["gclid", "gbraid", "wbraid", "dclid", "msclkid"] * 4))
    lines = [
        orjson.dumps(good[0]),
        orjson.dumps(record(s, 91, clicked_at="not a time")),
        orjson.dumps(good[1]),
        b"[1]",
        orjson.dumps(good[2]),
        orjson.dumps(long_paid),
    ]
    segment = b"\n".join(lines) + b"\n" + b"\0" * 4096 + b"\n".join(orjson.dumps(r) for r in good[3:]) + b"\n"
    later = b"\n".join(orjson.dumps(record(s, n)) for n in (7, 8)) + b"\n"
    (log_dir / "clicks-1-damaged.log").write_bytes(segment + b"\0" * 65536)
    (log_dir / "clicks-2-later.log").write_bytes(later + b"\0" * 65536)

    result = runner.invoke(args=["ingest-clicks"])
    assert result.exit_code == 0, result.output
    expected = {r["click_id"] for r in good} | {
        long_paid["click_id"],
        record(s, 7)["click_id"],
        record(s, 8)["click_id"],
    }
    assert stored_ids(app) == expected
    with app.app_context():
        paid = db.session.scalar(select(Click.paid_click).where(Click.click_id == long_paid["click_id"]))
    assert paid.startswith("gclid,gbraid"), "stored, cut to its column on PostgreSQL"
    set_aside = [json.loads(line) for line in (log_dir / REJECTED_NAME).read_text().splitlines()]
    assert [entry["record"] for entry in set_aside] == [record(s, 91, clicked_at="not a time"), [1]]
    assert all(entry["error"] for entry in set_aside)

    # Offered again: still not clicks, so still set aside, and nothing is stored twice.
    again = runner.invoke(args=["ingest-clicks", "--rejected"])
    assert again.exit_code == 0, again.output
    assert stored_ids(app) == expected
    assert len((log_dir / REJECTED_NAME).read_text().splitlines()) == 2


def test_a_record_set_aside_is_stored_when_offered_again_once_it_can_be(app, runner):
    s = setup_link(app)
    log_dir = Path(app.config["CLICK_LOG_DIR"])
    log_dir.mkdir(parents=True, exist_ok=True)
    kept = record(s, 5)
    entry = {"record": kept, "error": "OperationalError: the disk was full", "set_aside_at": "2026-11-24 01:00:01"}
    (log_dir / REJECTED_NAME).write_bytes(orjson.dumps(entry) + b"\n")
    result = runner.invoke(args=["ingest-clicks", "--rejected"])
    assert result.exit_code == 0, result.output
    assert stored_ids(app) == {kept["click_id"]}
    assert not (log_dir / REJECTED_NAME).exists()


def test_an_offer_the_database_refuses_keeps_every_record_for_the_next_one(app, runner, monkeypatch):
    """The database down while the set-aside records are offered: the command says so, nothing is lost, and the
    next offer stores them; a line of the file that cannot be read is kept, as text, with why."""
    from sqlalchemy.exc import OperationalError

    from affiliate.services import rollups

    s = setup_link(app)
    log_dir = Path(app.config["CLICK_LOG_DIR"])
    log_dir.mkdir(parents=True, exist_ok=True)
    kept = [record(s, n) for n in (20, 21, 22)]
    lines = [orjson.dumps({"record": r, "error": "OperationalError: disk full"}) for r in kept]
    (log_dir / REJECTED_NAME).write_bytes(b"\n".join([*lines, b"{not json"]) + b"\n")

    def database_down(*_) -> None:
        raise OperationalError("INSERT INTO click_rollups ...", {}, Exception("server closed the connection"))

    with monkeypatch.context() as patch:
        patch.setattr(rollups, "upsert", database_down)
        refused = runner.invoke(args=["ingest-clicks", "--rejected"])
    assert refused.exit_code != 0 and "refused" in refused.output
    assert stored_ids(app) == set()
    offered = runner.invoke(args=["ingest-clicks", "--rejected"])
    assert offered.exit_code == 0, offered.output
    assert stored_ids(app) == {r["click_id"] for r in kept}
    [left] = [json.loads(line) for line in (log_dir / REJECTED_NAME).read_text().splitlines()]
    assert left["record"] == "{not json" and "JSONDecodeError" in left["error"]
    assert not list(log_dir.glob("*.offering"))
