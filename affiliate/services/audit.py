"""The audit log: who changed what, when, from what to what.

A change made through the management API names the admin who issued the key as its actor and the key itself
(``actor_key_id``): the API puts the key's id in ``session.info[API_KEY_INFO]`` for the length of the request.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from affiliate.models import AuditLog

API_KEY_INFO = "audit_api_key_id"


def record(
    session: Session,
    *,
    actor_id: int | None,
    action: str,
    subject_type: str,
    subject_id: int,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    now: datetime,
    note: str | None = None,
) -> AuditLog:
    """Add one audit row describing a change; the caller commits it with the change."""
    entry = AuditLog(
        actor_id=actor_id,
        actor_key_id=session.info.get(API_KEY_INFO),
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        before=json.dumps(before, sort_keys=True, default=str) if before is not None else None,
        after=json.dumps(after, sort_keys=True, default=str) if after is not None else None,
        note=note,
        at=now,
    )
    session.add(entry)
    return entry
