"""The bulk decision both review lists share: read the ticked ids, the decision and the note, decide, say what changed.

The review queue (conversions) and the commissions page post the same form (``templates/shared/_bulk_decide.html``);
after a decision each goes back to its list with its filters, and after a form error it shows the list again with
the same rows ticked and the note kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from flask import flash, redirect, request, url_for

from affiliate.extensions import db
from affiliate.params import form_ids
from affiliate.services.review import DECISIONS, ReviewError
from affiliate.validators import UNSTORABLE_MESSAGE, unstorable

MAX_BATCH = 500
NOTE_MAX = 1000
PAST = {"approve": "approved", "reject": "rejected"}


@dataclass(frozen=True)
class Selection:
    """What the form asked, shown again after an error: the ticked ids and the note."""

    ids: frozenset[int] = field(default_factory=frozenset)
    note: str = ""


def bulk_decide(
    decide: Callable[[list[int], str, str], list[int]],
    *,
    noun: str,
    unchanged: str,
    back: str,
    filters: dict,
    show_again: Callable[[Selection], object],
):
    """Decide the ticked rows with ``decide(ids, decision, note)``; on success flash how many changed (the rest are
    ``unchanged``) and redirect to ``back`` with ``filters``; on a form error flash it and ``show_again`` the list."""
    decision = request.form.get("decision", "")
    ids = form_ids(big=True)[:MAX_BATCH]
    note = (request.form.get("note") or "").strip()[:NOTE_MAX]
    selection = Selection(frozenset(ids), note)
    if decision not in DECISIONS or not ids:
        flash(f"Tick at least one {noun} and choose approve or reject.", "error")
        return show_again(selection)
    if unstorable(note):
        flash(f"The note {UNSTORABLE_MESSAGE}.", "error")
        return show_again(Selection(frozenset(ids)))
    try:
        changed = decide(ids, decision, note)
    except ReviewError as error:
        db.session.rollback()
        flash(str(error), "error")
        return show_again(selection)
    db.session.commit()
    message = f"{len(changed)} {noun}{'s' if len(changed) != 1 else ''} {PAST[decision]}."
    if len(ids) - len(changed):
        message += f" {len(ids) - len(changed)} {unchanged}"
    flash(message, "success")
    return redirect(url_for(back, **filters))
