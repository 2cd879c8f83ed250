"""Attribution rules, and the service against a small, obviously correct reference model."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from affiliate.services.attribution import Binding, ConversionFacts, Terms, Touch, attribute
from affiliate.services.conversions import trace_for_affiliate

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(days=30)
TERMS = Terms(window=WINDOW)


def touch(id: int, at: datetime, **fields) -> Touch:
    values = {
        "click_id": f"click{id:027d}",
        "program_id": 1,
        "affiliate_id": 10 + id,
        "link_id": 100 + id,
        "visitor_id": "visitor-a",
        "fingerprint": "device-a",
    }
    values.update(fields)
    return Touch(id=id, clicked_at=at, **values)


def facts(at: datetime = T0, **fields) -> ConversionFacts:
    return ConversionFacts(program_id=fields.pop("program_id", 1), occurred_at=at, **fields)


def reasons(result) -> dict[int, str]:
    return {line.touch_id: line.reason for line in result.trace if line.matched_by != "binding"}


@pytest.mark.parametrize(
    ("age", "attributed"),
    [(WINDOW - timedelta(seconds=1), True), (WINDOW, True), (WINDOW + timedelta(seconds=1), False)],
)
def test_window_boundary(age, attributed):
    result = attribute(facts(visitor_id="visitor-a"), [touch(1, T0 - age)], TERMS)
    assert (result.affiliate_id == 11) is attributed
    if not attributed:
        assert reasons(result) == {1: "outside_window"}
        assert "the window is 30 d" in result.trace[0].detail


def test_each_losing_reason():
    touches = [
        touch(1, T0 - timedelta(days=1), program_id=2),
        touch(2, T0 + timedelta(seconds=1)),
        touch(3, T0 - timedelta(days=40)),
        touch(4, T0 - timedelta(hours=5), is_bot=True),
        touch(5, T0 - timedelta(hours=4), fraud_action="reject"),
        touch(6, T0 - timedelta(hours=3), affiliate_active=False),
        touch(7, T0 - timedelta(hours=2), visitor_id="someone-else", fingerprint=None),
        touch(8, T0 - timedelta(hours=1), fraud_action="flag"),
        touch(9, T0 - timedelta(hours=6)),
    ]
    result = attribute(facts(visitor_id="visitor-a"), touches, TERMS)
    assert result.touch.id == 8
    assert reasons(result) == {
        1: "other_program",
        2: "after_conversion",
        3: "outside_window",
        4: "bot",
        5: "fraud_rejected",
        6: "affiliate_inactive",
        7: "no_match",
        8: "won",
        9: "older",
    }


def test_click_id_beats_visitor_beats_fingerprint():
    named = touch(1, T0 - timedelta(days=3), visitor_id=None, fingerprint=None)
    cookie = touch(2, T0 - timedelta(days=2), fingerprint=None)
    device = touch(3, T0 - timedelta(days=1), visitor_id=None)
    both = facts(click_id=named.click_id, visitor_id="visitor-a", fingerprint="device-a")
    result = attribute(both, [device, cookie, named], TERMS)
    assert (result.touch.id, result.matched_by) == (1, "click_id")
    assert reasons(result) == {1: "won", 2: "weaker_match", 3: "weaker_match"}
    assert (
        attribute(facts(visitor_id="visitor-a", fingerprint="device-a"), [device, cookie], TERMS).matched_by
        == "visitor"
    )
    assert attribute(facts(fingerprint="device-a"), [device, cookie], TERMS).touch.id == 3


def test_first_and_last_click_and_ties_by_id():
    early, late = touch(5, T0 - timedelta(days=9)), touch(6, T0 - timedelta(days=1))
    tie_low, tie_high = touch(7, T0 - timedelta(days=2)), touch(8, T0 - timedelta(days=2))
    assert attribute(facts(visitor_id="visitor-a"), [early, late], TERMS).touch.id == 6
    first = Terms(window=WINDOW, model="first_click")
    result = attribute(facts(visitor_id="visitor-a"), [late, early], first)
    assert result.touch.id == 5 and reasons(result)[6] == "newer"
    last_tie = attribute(facts(visitor_id="visitor-a"), [tie_high, tie_low], TERMS)
    assert last_tie.touch.id == 8 and reasons(last_tie)[7] == "tie_lower_id"
    first_tie = attribute(facts(visitor_id="visitor-a"), [tie_high, tie_low], first)
    assert first_tie.touch.id == 7 and reasons(first_tie)[8] == "tie_higher_id"


def test_a_binding_in_force_wins_over_later_clicks():
    theirs = touch(1, T0 - timedelta(days=20), affiliate_id=50)
    thief = touch(2, T0 - timedelta(hours=1), affiliate_id=60)
    binding = Binding(affiliate_id=50, touch_id=1, bound_at=T0 - timedelta(days=19), until=T0 + timedelta(days=1))
    result = attribute(facts(visitor_id="visitor-a"), [theirs, thief], TERMS, binding)
    assert (result.affiliate_id, result.matched_by, result.touch.id) == (50, "binding", 1)
    assert reasons(result) == {1: "won", 2: "customer_bound"}
    assert result.trace[0].reason == "customer_bound" and result.trace[0].outcome == "won"


@pytest.mark.parametrize(
    ("binding", "why"),
    [
        (
            Binding(affiliate_id=50, touch_id=None, bound_at=T0 - timedelta(days=90), until=T0 - timedelta(seconds=1)),
            "binding_expired",
        ),
        # The recurring period ends at its end: a sale at that very moment is past it, as it earns no repeat.
        (Binding(affiliate_id=50, touch_id=None, bound_at=T0 - timedelta(days=30), until=T0), "binding_expired"),
        (
            Binding(
                affiliate_id=50, touch_id=None, bound_at=T0 - timedelta(days=9), until=None, affiliate_active=False
            ),
            "binding_affiliate_inactive",
        ),
    ],
)
def test_a_binding_not_in_force_is_ignored_and_said_so(binding, why):
    result = attribute(
        facts(visitor_id="visitor-a"), [touch(2, T0 - timedelta(hours=1), affiliate_id=60)], TERMS, binding
    )
    assert result.affiliate_id == 60
    assert result.trace[0].outcome == "ignored" and result.trace[0].reason == why


def test_lifetime_binding():
    binding = Binding(affiliate_id=50, touch_id=None, bound_at=T0 - timedelta(days=3000), until=None)
    assert attribute(facts(), [], TERMS, binding).affiliate_id == 50


def test_affiliate_view_hides_other_partners_and_dict_is_json():
    mine, theirs = touch(1, T0 - timedelta(days=1), affiliate_id=50), touch(2, T0 - timedelta(days=2), affiliate_id=60)
    result = attribute(facts(visitor_id="visitor-a"), [mine, theirs], TERMS)
    stored = json.loads(json.dumps(result.as_dict()))
    view = trace_for_affiliate(stored, 50)
    other = next(line for line in view["trace"] if line.get("affiliate_id") != 50)
    assert other == {"outcome": "lost", "reason": "older", "detail": "Another partner's click."}
    assert "device-a" not in json.dumps(view) and theirs.click_id not in json.dumps(view)


def test_naive_times_are_refused():
    with pytest.raises(ValueError):
        attribute(facts(at=T0.replace(tzinfo=None)), [], TERMS)


# --- the reference model ---


def reference(conversion: ConversionFacts, touches: list[Touch], terms: Terms, binding: Binding | None):
    """Obviously correct, and shaped differently: filter each tier in turn, then sort and take the first."""
    if (
        binding is not None
        and binding.affiliate_active
        and binding.bound_at <= conversion.occurred_at
        and (binding.until is None or conversion.occurred_at < binding.until)  # the period ends at its end
    ):
        return binding.affiliate_id, "binding", None

    def ok(t: Touch) -> bool:
        age = conversion.occurred_at - t.clicked_at
        return (
            t.program_id == conversion.program_id
            and timedelta(0) <= age <= terms.window
            and not t.is_bot
            and t.fraud_action != "reject"
            and t.affiliate_active
        )

    tiers = [
        ("click_id", [t for t in touches if conversion.click_id and t.click_id == conversion.click_id]),
        (
            "visitor",
            [
                t
                for t in touches
                if conversion.visitor_id
                and t.visitor_id == conversion.visitor_id
                and not (conversion.click_id and t.click_id == conversion.click_id)
            ],
        ),
        (
            "fingerprint",
            [
                t
                for t in touches
                if conversion.fingerprint
                and t.fingerprint == conversion.fingerprint
                and not (conversion.click_id and t.click_id == conversion.click_id)
                and not (conversion.visitor_id and t.visitor_id == conversion.visitor_id)
            ],
        ),
    ]
    for name, group in tiers:
        good = [t for t in group if ok(t)]
        if good:
            if terms.model == "last_click":
                good.sort(key=lambda t: (t.clicked_at, t.id), reverse=True)
            else:
                good.sort(key=lambda t: (t.clicked_at, t.id))
            return good[0].affiliate_id, name, good[0].id
    return None, None, None


# Times on a grid around the window's edges, so boundaries are hit often.
OFFSETS = st.sampled_from(
    [-2, -1, 0, 1, 2, 60, 3600, 86400 * 29, 86400 * 30 - 1, 86400 * 30, 86400 * 30 + 1, 86400 * 31]
)
touch_strategy = st.builds(
    lambda id, offset, program, affiliate, visitor, device, bot, action, active: Touch(
        id=id,
        click_id=f"c{id:031d}",
        program_id=program,
        affiliate_id=affiliate,
        link_id=id,
        clicked_at=T0 - timedelta(seconds=offset),
        visitor_id=visitor,
        fingerprint=device,
        is_bot=bot,
        fraud_action=action,
        affiliate_active=active,
    ),
    id=st.integers(1, 40),
    offset=OFFSETS,
    program=st.sampled_from([1, 1, 1, 2]),
    affiliate=st.integers(1, 4),
    visitor=st.sampled_from([None, "va", "vb"]),
    device=st.sampled_from([None, "da", "db"]),
    bot=st.sampled_from([False, False, False, True]),
    action=st.sampled_from([None, None, "allow", "flag", "reject"]),
    active=st.sampled_from([True, True, True, False]),
)


@settings(max_examples=400, deadline=None)
@given(
    touches=st.lists(touch_strategy, max_size=12, unique_by=lambda t: t.id),
    click_pick=st.integers(0, 12),
    visitor=st.sampled_from([None, "va", "vb"]),
    device=st.sampled_from([None, "da", "db"]),
    model=st.sampled_from(["last_click", "first_click"]),
    binding=st.none()
    | st.builds(
        lambda affiliate, bound, until, active: Binding(
            affiliate_id=affiliate,
            touch_id=None,
            bound_at=T0 - timedelta(seconds=bound),
            until=None if until is None else T0 + timedelta(seconds=until),
            affiliate_active=active,
        ),
        affiliate=st.integers(1, 4),
        bound=OFFSETS,
        until=st.none() | st.sampled_from([-1, 0, 1]),
        active=st.booleans(),
    ),
)
def test_c12_service_agrees_with_the_reference_model(touches, click_pick, visitor, device, model, binding):
    click_id = touches[click_pick].click_id if click_pick < len(touches) else None
    conversion = ConversionFacts(
        program_id=1, occurred_at=T0, click_id=click_id, visitor_id=visitor, fingerprint=device
    )
    terms = Terms(window=WINDOW, model=model)
    result = attribute(conversion, touches, terms, binding)
    winner = result.touch.id if result.touch else None
    assert (result.affiliate_id, result.matched_by, winner) == reference(conversion, touches, terms, binding)
    again = attribute(conversion, list(reversed(touches)), terms, binding)
    assert again.as_dict() == result.as_dict(), "the order of candidates changes nothing"
