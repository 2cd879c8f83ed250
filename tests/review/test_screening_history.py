"""The affiliate's history that conversion screening counts in the database, at its exact boundaries."""

from __future__ import annotations

import itertools
from datetime import timedelta

from affiliate.extensions import db
from affiliate.models import Click, Conversion, ConversionStatus, ConversionType, utcnow
from affiliate.services.screening import screen
from tests.factories import make_admin, make_affiliate, make_link, make_program

LATE = timedelta(hours=168)  # the click_spamming rule's default late_hours
_orders = itertools.count(1)


def history(app, program, affiliate, link, after_click: list[timedelta]) -> None:
    """Store one sale per delay, each made that long after its own click."""
    now = utcnow().replace(microsecond=123456)
    with app.app_context():
        for n, delay in enumerate(after_click):
            clicked_at = now - timedelta(days=20, minutes=n)
            click = Click(
                click_id=f"spam-{next(_orders)}",
                link_id=link.id,
                affiliate_id=affiliate.id,
                program_id=program.id,
                clicked_at=clicked_at,
            )
            db.session.add(click)
            db.session.flush()
            db.session.add(
                Conversion(
                    program_id=program.id,
                    type=ConversionType.SALE,
                    order_id=f"o-{next(_orders)}",
                    amount_cents=100,
                    currency="USD",
                    click_id=click.id,
                    affiliate_id=affiliate.id,
                    occurred_at=clicked_at + delay,
                    created_at=now,
                    status=ConversionStatus.PENDING,
                )
            )
        db.session.commit()


def spamming_fires(app, program, affiliate) -> bool:
    with app.app_context():
        new = Conversion(
            program_id=program.id,
            type=ConversionType.SALE,
            order_id=f"new-{next(_orders)}",
            amount_cents=100,
            currency="USD",
            affiliate_id=affiliate.id,
            occurred_at=utcnow(),
        )
        verdict = screen(db.session, new, None, now=utcnow())
        db.session.rollback()
        return "click_spamming" in {fired.rule for fired in verdict.fired}


def test_a_conversion_exactly_late_hours_after_its_click_is_not_late(app):
    program = make_program(app, make_admin(app))
    just_late = LATE + timedelta(microseconds=1)
    # The rule fires above a late share of 0.6: 6 of 10 does not, 7 of 10 does.
    on_time, spammer = make_affiliate(app), make_affiliate(app)
    history(app, program, on_time, make_link(app, on_time, program), [just_late] * 6 + [LATE] * 4)
    history(app, program, spammer, make_link(app, spammer, program), [just_late] * 7 + [LATE] * 3)
    assert not spamming_fires(app, program, on_time), "exactly late_hours after the click is not late"
    assert spamming_fires(app, program, spammer), "one microsecond more is"
