"""On PostgreSQL the ingester stores a batch in lanes split by affiliate, side by side: a lane that fails leaves the
whole segment in the click log, and storing it again counts every click once."""

from __future__ import annotations

from sqlalchemy import func, select

from affiliate.extensions import db
from affiliate.models import Click, ClickRollup
from affiliate.services import rollups
from redirector import clickstore
from tests.factories import Visitor, make_affiliate, make_link
from tests.redirector.helpers import CHROME, clicks_held, setup_link


def test_a_lane_that_fails_leaves_its_clicks_in_the_log_and_the_retry_counts_each_click_once(
    app, redirector, monkeypatch
):
    s = setup_link(app)
    other = make_affiliate(app, name="Other partner")  # the next id: the other lane on PostgreSQL
    links = {s.affiliate.id: s.link, other.id: make_link(app, other, s.program)}
    assert len({affiliate_id % clickstore.INGEST_LANES for affiliate_id in links}) == 2
    with clicks_held(redirector):
        for n in range(6):
            for link in links.values():
                shopper = Visitor(redirector, f"198.51.100.{n + 1}")
                assert shopper.get(f"/r/{link.code}", headers={"User-Agent": CHROME}).status_code == 302
    upsert = rollups.upsert

    def refusing(connection, totals):
        if any(key[2] == other.id for key in totals):
            raise RuntimeError("the database refuses this lane")
        return upsert(connection, totals)

    monkeypatch.setattr(rollups, "upsert", refusing)
    assert not redirector.recorder.flush(timeout=1), "the segment stays in the click log"
    with app.app_context():
        stored = dict(db.session.execute(select(Click.affiliate_id, func.count()).group_by(Click.affiliate_id)).all())
    lanes = redirector.recorder.store.lanes
    assert other.id not in stored
    assert stored.get(s.affiliate.id, 0) == (6 if lanes > 1 else 0), "the other lane went through on its own"

    monkeypatch.setattr(rollups, "upsert", upsert)
    assert redirector.recorder.flush(), "offered again, the segment is stored"
    with app.app_context():
        stored = dict(db.session.execute(select(Click.affiliate_id, func.count()).group_by(Click.affiliate_id)).all())
        counted = dict(
            db.session.execute(
                select(ClickRollup.affiliate_id, func.sum(ClickRollup.raw_clicks))
                .where(ClickRollup.dimension == "total")
                .group_by(ClickRollup.affiliate_id)
            ).all()
        )
    assert stored == {s.affiliate.id: 6, other.id: 6}, "each click stored once"
    assert counted == {s.affiliate.id: 6, other.id: 6}, "and counted once in the rollups"
