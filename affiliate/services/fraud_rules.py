"""Saving a program's fraud rule settings, checked, audited, applying to new traffic only."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from affiliate.models import FraudRule, Program, User
from affiliate.services import audit
from affiliate.services.fraud import DEFAULT_RULES, Action
from affiliate.services.screening import program_rules

COUNTRY = re.compile(r"[A-Z]{2}")


class RuleError(ValueError):
    """A setting that cannot be saved; ``field`` names the form field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse_settings(form: Mapping[str, str]) -> dict[str, dict]:
    """Read ``<rule>.action``, ``<rule>.weight`` and ``<rule>.<threshold>`` form fields into checked settings."""
    parsed: dict[str, dict] = {}
    for name, default in DEFAULT_RULES.items():
        action = form.get(f"{name}.action", default.action.value)
        if action not in {a.value for a in Action}:
            raise RuleError(f"{name}.action", "Choose off, allow, flag or reject.")
        weight = _int(form, f"{name}.weight", default.weight, 0, 100)
        settings = {}
        for key, value in default.settings.items():
            field = f"{name}.{key}"
            if isinstance(value, list):
                codes = [code.strip().upper() for code in form.get(field, ",".join(value)).split(",") if code.strip()]
                bad = [code for code in codes if not COUNTRY.fullmatch(code)]
                if bad:
                    raise RuleError(field, f"{bad[0]} is not a two-letter country code.")
                settings[key] = sorted(set(codes))
            elif isinstance(value, float):
                settings[key] = _share(form, field, value)
            else:
                settings[key] = _int(form, field, value, 1, 100_000)
        parsed[name] = {"action": action, "weight": weight, "settings": settings}
    return parsed


def save_rules(session: Session, program: Program, parsed: dict[str, dict], *, actor: User, now: datetime) -> int:
    """Store the settings that differ from what the program has; return how many rules changed."""
    current = program_rules(session, program.id)
    rows = {row.rule: row for row in session.scalars(select(FraudRule).where(FraudRule.program_id == program.id))}
    changed = 0
    for name, wanted in parsed.items():
        before = current[name]
        effective = {key: before.get(key) for key in DEFAULT_RULES[name].settings}
        if (before.action.value, before.weight, effective) == (wanted["action"], wanted["weight"], wanted["settings"]):
            continue
        row = rows.get(name) or FraudRule(program_id=program.id, rule=name)
        row.action, row.weight, row.settings, row.updated_at = (
            wanted["action"],
            wanted["weight"],
            json.dumps(wanted["settings"]),
            now,
        )
        session.add(row)
        session.flush()
        audit.record(
            session,
            actor_id=actor.id,
            action="fraud_rule.update",
            subject_type="program",
            subject_id=program.id,
            before={"rule": name, "action": before.action.value, "weight": before.weight, "settings": effective},
            after={"rule": name, **wanted},
            now=now,
        )
        changed += 1
    return changed


def _int(form: Mapping[str, str], field: str, default: int, low: int, high: int) -> int:
    text = form.get(field, str(default)).strip()
    # isdigit alone also takes digits int() refuses, such as superscripts ("²"); the length check keeps int() from
    # reading thousands of digits (past Python's limit it raises).
    plain = text.isascii() and text.isdigit() and len(text) <= len(str(high))
    if not plain or not low <= int(text) <= high:
        raise RuleError(field, f"Enter a whole number from {low} to {high}.")
    return int(text)


def _share(form: Mapping[str, str], field: str, default: float) -> float:
    text = form.get(field, str(default)).strip()
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise RuleError(field, "Enter a share between 0 and 1, such as 0.5.")
    return value
