"""Click rollups: what reports read instead of raw clicks, and the state of their maintenance."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from affiliate.extensions import db
from affiliate.models.types import UTCDateTime


class ClickRollup(db.Model):
    """Raw, human and unique clicks of one UTC day, affiliate and program, for one value of one dimension.

    Kept per affiliate and program rather than per link: a report sums far fewer rows (an
    affiliate with 100 links has one ``total`` row a day, not 100), and a batch of clicks merges
    into fewer upserts. Clicks per link are the ``link`` dimension, valued by link id.

    The primary key leads with the dimension and day, so a program-wide report reads one
    contiguous range; ``ix_click_rollups_affiliate`` serves one affiliate's reports. The counters
    are in no index, so adding to them rewrites no index entry. There are no foreign keys: every
    row is derived from clicks that already hold them, and checking them would cost the ingester.
    """

    __tablename__ = "click_rollups"
    __table_args__ = (Index("ix_click_rollups_affiliate", "affiliate_id", "dimension", "day"),)

    dimension: Mapped[str] = mapped_column(String(16), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    affiliate_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    program_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    value: Mapped[str] = mapped_column(String(255), primary_key=True)
    raw_clicks: Mapped[int] = mapped_column(BigInteger, default=0)
    human_clicks: Mapped[int] = mapped_column(BigInteger, default=0)
    unique_clicks: Mapped[int] = mapped_column(BigInteger, default=0)


class RollupState(db.Model):
    """The one row saying which days' raw clicks were purged, and which maintenance command runs.

    Rollups of days before ``purged_before`` can no longer be recomputed, so a rebuild keeps
    them. A purge and a rebuild must not overlap (the purge would delete clicks the rebuild is
    still counting), so each takes the lease first with a guarded update.
    """

    __tablename__ = "rollup_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    purged_before: Mapped[date | None] = mapped_column(Date)
    lease_holder: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ConversionRollup(db.Model):
    """Attributed conversions per UTC day (of ``occurred_at``), affiliate, program, type, status and currency.

    Kept by database triggers on conversions (created in migration 0006), so every change, whichever code
    makes it, is counted in its own transaction. A refund is filed under its sale's status, so
    the refund of a sale that review rejected can be left out with the sale. The overviews read
    these; breakdowns by a click's dimension read the conversions themselves.

    The primary key leads with the day, for program-wide reports; ``ix_conversion_rollups_affiliate`` serves
    one affiliate's, which would otherwise read every affiliate's rows of the period.
    """

    __tablename__ = "conversion_rollups"
    __table_args__ = (Index("ix_conversion_rollups_affiliate", "affiliate_id", "day"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    affiliate_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    program_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    conversion_count: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_cents: Mapped[int] = mapped_column(BigInteger, default=0)


class CommissionRollup(db.Model):
    """Commission amounts per UTC day of their conversion, affiliate, program, status, currency and ``own``.

    ``own``: the commission is the converting affiliate's (not a second tier for their recruiter,
    nor a friend's welcome reward). Kept by database triggers on commissions and conversions. Indexed for
    one affiliate's reports as conversion rollups are.
    """

    __tablename__ = "commission_rollups"
    __table_args__ = (Index("ix_commission_rollups_affiliate", "affiliate_id", "day"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    affiliate_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    program_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    own: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger, default=0)
