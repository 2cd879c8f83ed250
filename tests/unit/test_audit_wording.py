"""The audit log in words: every action the code writes has a sentence, and entries read as people say them."""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from affiliate.models import AuditLog
from affiliate.services.audit import ACTIONS, Names, Subject, describe, kinds, status_word

SOURCE = Path(__file__).resolve().parents[2] / "affiliate"
AT = datetime(2026, 12, 5, 14, 3, tzinfo=UTC)


class Module:
    """One source file's syntax tree, with each node's enclosing function."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.parent: dict[ast.AST, ast.FunctionDef | None] = {}
        self._index(self.tree, None)

    def _index(self, node: ast.AST, function: ast.FunctionDef | None) -> None:
        for child in ast.iter_child_nodes(node):
            self.parent[child] = function
            self._index(child, child if isinstance(child, ast.FunctionDef) else function)

    def where(self, node: ast.AST) -> str:
        return f"{self.path.relative_to(SOURCE.parent)}:{node.lineno}"


def _dict_keys(module: Module, name: str, scope: ast.FunctionDef | None) -> set[str] | None:
    """The string keys of the dict literal assigned to ``name`` in ``scope`` or at module level."""
    for body in ([scope] if scope else []) + [module.tree]:
        for node in ast.walk(body):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            named = isinstance(node, ast.Assign | ast.AnnAssign) and any(getattr(t, "id", "") == name for t in targets)
            value = node.value if named else None
            if isinstance(value, ast.Dict):
                return {key.value for key in value.keys if isinstance(key, ast.Constant)}
    return None


def resolve(module: Module, expression: ast.AST, scope: ast.FunctionDef | None) -> set[str]:
    """Every string ``expression`` can be: constants, either branch of a conditional, f-strings over names whose
    values are found from the function's assignments, its membership guard, or its callers in the module."""
    if isinstance(expression, ast.Constant) and isinstance(expression.value, str):
        return {expression.value}
    if isinstance(expression, ast.IfExp):
        return resolve(module, expression.body, scope) | resolve(module, expression.orelse, scope)
    if isinstance(expression, ast.JoinedStr):
        values = {""}
        for part in expression.values:
            options = resolve(module, part.value if isinstance(part, ast.FormattedValue) else part, scope)
            values = {value + option for value in values for option in options}
        return values
    if isinstance(expression, ast.Name) and scope is not None:
        return _resolve_name(module, expression.id, scope)
    raise AssertionError(f"{module.where(expression)}: cannot tell which audit action this writes")


def _resolve_name(module: Module, name: str, scope: ast.FunctionDef) -> set[str]:
    assigned = [
        node.value
        for node in ast.walk(scope)
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
    ]
    if assigned:
        return set().union(*(resolve(module, value, scope) for value in assigned))
    for node in ast.walk(scope):  # `if decision not in DECISIONS: raise ...`
        if (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Name)
            and node.left.id == name
            and isinstance(node.ops[0], ast.In | ast.NotIn)
            and isinstance(node.comparators[0], ast.Name)
        ):
            keys = _dict_keys(module, node.comparators[0].id, scope)
            if keys:
                return keys
    parameters = [arg.arg for arg in scope.args.args]
    if name in parameters:
        position = parameters.index(name)
        values: set[str] = set()
        for call in ast.walk(module.tree):
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == scope.name:
                given = [kw.value for kw in call.keywords if kw.arg == name]
                argument = given[0] if given else (call.args[position] if position < len(call.args) else None)
                if argument is not None:
                    values |= resolve(module, argument, module.parent.get(call))
        if values:
            return values
    raise AssertionError(f"{module.where(scope)}: cannot tell which audit actions {name!r} stands for")


def written_actions() -> dict[str, str]:
    """Every action string passed to ``audit.record`` anywhere in affiliate/, with where it is written."""
    found: dict[str, str] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        module = Module(path)
        for call in ast.walk(module.tree):
            if not isinstance(call, ast.Call):
                continue
            function = call.func
            if isinstance(function, ast.Name) and function.id == "AuditLog":
                assert path.name == "audit.py", f"{module.where(call)}: write audit entries through audit.record"
            if (
                isinstance(function, ast.Attribute)
                and function.attr == "record"
                and getattr(function.value, "id", "") == "audit"
            ):
                (action,) = [kw.value for kw in call.keywords if kw.arg == "action"]
                for value in resolve(module, action, module.parent.get(call)):
                    found.setdefault(value, module.where(call))
    return found


def test_every_action_written_has_words_and_every_wording_is_written():
    written = written_actions()
    assert len(written) > 60, "the scan found the writers"
    missing = {action: where for action, where in written.items() if action not in ACTIONS}
    assert not missing, f"audit actions without a sentence in audit.ACTIONS: {missing}"
    assert set(ACTIONS) == set(written), f"sentences for actions nothing writes: {set(ACTIONS) - set(written)}"


def test_the_scan_sees_actions_built_from_a_guarded_name_and_from_callers():
    written = written_actions()
    assert {"affiliate.approve", "affiliate.reactivate", "enrollment.remove"} <= set(written)  # guarded names
    assert {"commission.approval", "commission.conversion_rejected", "payout.paid"} <= set(written)  # callers


def entry(action: str, subject: tuple[str, int], before=None, after=None, **fields) -> AuditLog:
    return AuditLog(
        action=action,
        subject_type=subject[0],
        subject_id=subject[1],
        before=None if before is None else json.dumps(before),
        after=None if after is None else json.dumps(after),
        at=AT,
        **fields,
    )


NAMES = Names(
    people={1: ("Ada Admin", "ada@example.com"), 4: ("Bob Blogger", "bob@example.com")},
    keys={9: "ab12cd34"},
    programs={3: ("Demo Program", "USD")},
    groups={6: "VIP"},
    subjects={
        ("commission", 7): Subject("commission on order A-1001 ($12.00) for Bob Blogger", "USD"),
        ("payout", 8): Subject("payout of $30.00 to Bob Blogger", "EUR", ("finance_payouts.show", {"batch_id": 2})),
        ("program", 3): Subject("Demo Program", "USD"),
        ("affiliate", 4): Subject("Bob Blogger"),
        ("adjustment", 5): Subject("bonus of $50.00 for Bob Blogger", "USD"),
    },
)


def test_a_commission_approval_reads_as_a_sentence_with_its_change():
    wording = describe(
        entry("commission.approval", ("commission", 7), {"status": "pending"}, {"status": "approved"}), NAMES
    )
    assert wording.sentence == "Approved commission on order A-1001 ($12.00) for Bob Blogger"
    assert [str(change) for change in wording.changes] == ["Status: pending → approved"]
    assert (wording.actor, wording.actor_email, wording.key_prefix) == ("System", None, None)


def test_amounts_use_the_subjects_currency_and_unknown_keys_read_as_words():
    wording = describe(
        entry(
            "payout.paid",
            ("payout", 8),
            {"amount_cents": 3000, "external_ref": "X-1"},
            {"amount_cents": 2500, "external_ref": "X-2"},
            actor_id=1,
        ),
        NAMES,
    )
    assert wording.sentence == "Marked payout of $30.00 to Bob Blogger paid"
    assert [str(change) for change in wording.changes] == ["Amount: €30.00 → €25.00", "External ref: X-1 → X-2"]
    assert (wording.actor, wording.actor_email, wording.link) == (
        "Ada Admin",
        "ada@example.com",
        ("finance_payouts.show", {"batch_id": 2}),
    )


def test_a_change_through_an_api_key_names_the_key():
    wording = describe(
        entry("adjustment.create", ("adjustment", 5), None, {"status": "pending_approval"}, actor_id=1, actor_key_id=9),
        NAMES,
    )
    assert wording.sentence == "Added bonus of $50.00 for Bob Blogger"
    assert wording.key_prefix == "ab12cd34" and wording.actor == "Ada Admin"
    assert [str(change) for change in wording.changes] == ["Status: waiting for approval"]


def test_a_fraud_rule_change_names_the_rule_its_action_and_thresholds_in_words():
    before = {"rule": "click_flooding", "action": "reject", "weight": 60, "settings": {"per_minute": 5, "per_hour": 30}}
    after = {"rule": "click_flooding", "action": "flag", "weight": 60, "settings": {"per_minute": 8, "per_hour": 30}}
    wording = describe(entry("fraud_rule.update", ("program", 3), before, after, actor_id=1), NAMES)
    assert wording.sentence == "Changed the fraud rule “Click flooding” of Demo Program"
    assert [str(c) for c in wording.changes] == ["When it fires: Reject → Flag for review", "Clicks per minute: 5 → 8"]


def test_a_plan_version_names_whom_it_is_for_with_amounts_percentages_and_its_start_in_utc():
    after = {"plan_id": 12, "affiliate_id": None, "group_id": 6, "effective_from": "2027-01-01 00:00:00+00:00"}
    after |= {"flat_cents": 500, "percent_bps": 750, "tiers": [{"threshold": 10, "percent_bps": 1000, "flat_cents": 0}]}
    wording = describe(entry("plan.version_added", ("program", 3), None, after, actor_id=1), NAMES)
    assert wording.sentence == "Changed the commission plan of Demo Program for the group VIP"
    assert [str(c) for c in wording.changes] == [
        "Plan version: #12",
        "Group: VIP",
        "In force from: Jan 1, 2027, 00:00 UTC",
        "Flat amount: $5.00",
        "Percentage: 7.5%",
        "Tiers: from 10: 10%",
    ]


def test_moving_an_affiliate_names_the_group_and_the_program():
    before, after = {"program_id": 3, "group_id": None}, {"program_id": 3, "group_id": 6}
    wording = describe(entry("group.moved", ("affiliate", 4), before, after, actor_id=1), NAMES)
    assert wording.sentence == "Moved Bob Blogger to VIP in Demo Program"
    assert [str(c) for c in wording.changes] == ["Group: — → VIP"]


def test_a_subject_no_longer_found_still_reads_as_words():
    wording = describe(entry("coupon.retired", ("coupon", 99), {"status": "active"}, {"status": "retired"}), Names())
    assert wording.sentence == "Retired coupon #99"


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_every_action_reads_as_a_sentence_even_with_nothing_known(action):
    subject = action.split(".")[0]
    wording = describe(entry(action, (subject, 1), None, {"program_id": 2}), Names())
    assert wording.sentence[0].isupper() and "{" not in wording.sentence and "_" not in wording.sentence
    assert wording.kind == ACTIONS[action][0]


def test_an_action_from_an_older_release_still_reads():
    wording = describe(entry("program.archived", ("program", 3)), NAMES)
    assert wording.sentence == "Program archived: Demo Program" and wording.kind == "Program archived"


def test_kinds_offer_the_actions_of_the_chosen_subjects_in_words():
    offered = kinds(("payout",))
    assert offered["payout.paid"] == "Payout paid" and all(action.startswith("payout.") for action in offered)


def test_statuses_read_as_plain_words():
    assert status_word("pending_approval") == "waiting for approval"
    assert status_word("tie_lower_id") == "tie lower id" and status_word(None) == "—"
