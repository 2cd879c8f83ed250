"""Signed requests and strict JSON: known answers, tolerance edges, and fuzzing."""

from __future__ import annotations

import contextlib
import inspect
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from affiliate.api import signing, strict_json
from affiliate.api.signing import SignatureError, sign, signature_header, verify
from affiliate.api.strict_json import JSONError, parse_object, require_int, require_str

SECRET = "whsec_test-secret"
NEW_SECRET = "whsec_rotated-secret"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
TS = int(NOW.timestamp())
BODY = b'{"type":"sale","order_id":"o-1","amount":4200,"currency":"USD"}'
KNOWN = "3bab83e354a0db6b436b52706299402b65d6ee5a53ba23b576450686b5cbcad0"


def headers(secret: str = SECRET, request_id: str = "req-1", timestamp: int = TS, body: bytes = BODY) -> dict:
    return {
        "Clicktrail-Request-Id": request_id,
        "Clicktrail-Timestamp": str(timestamp),
        "Clicktrail-Signature": signature_header(secret, request_id, timestamp, body),
    }


def test_known_answer():
    # printf 'req-1.1795521600.{"type":...}' | openssl dgst -sha256 -hmac whsec_test-secret
    assert sign(SECRET, "req-1", TS, BODY) == KNOWN


def test_either_of_two_secrets_is_accepted_during_rotation():
    for secret in (SECRET, NEW_SECRET):
        assert verify(headers(secret), BODY, [NEW_SECRET, SECRET], now=NOW).request_id == "req-1"
    both = headers()
    both["Clicktrail-Signature"] += ", " + signature_header(NEW_SECRET, "req-1", TS, BODY)
    assert verify(both, BODY, [NEW_SECRET], now=NOW)
    with pytest.raises(SignatureError) as error:
        verify(headers(SECRET), BODY, [NEW_SECRET], now=NOW)
    assert error.value.reason == "signature_mismatch"


@pytest.mark.parametrize("skew", [-300, 300, 0])
def test_timestamps_within_300_seconds_both_ways(skew):
    assert verify(headers(timestamp=TS + skew), BODY, [SECRET], now=NOW)


@pytest.mark.parametrize("skew", [-301, 301, -86400, 10**9])
def test_timestamps_beyond_300_seconds_are_refused(skew):
    with pytest.raises(SignatureError) as error:
        verify(headers(timestamp=TS + skew), BODY, [SECRET], now=NOW)
    assert error.value.reason == "timestamp_out_of_tolerance"


def _flip(text: str, index: int) -> str:
    return text[:index] + ("a" if text[index] != "a" else "b") + text[index + 1 :]


def test_any_mutation_is_refused():
    good = headers()
    mutations = [
        (dict(good), BODY.replace(b"4200", b"4201")),
        (dict(good), BODY + b" "),
        ({**good, "Clicktrail-Request-Id": "req-2"}, BODY),
        ({**good, "Clicktrail-Timestamp": str(TS + 1)}, BODY),
    ]
    signature = good["Clicktrail-Signature"]
    for index in range(3, len(signature), 7):
        mutations.append(({**good, "Clicktrail-Signature": _flip(signature, index)}, BODY))
    for sent, body in mutations:
        with pytest.raises(SignatureError):
            verify(sent, body, [SECRET], now=NOW)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"Clicktrail-Request-Id": None}, "missing_header"),
        ({"Clicktrail-Timestamp": None}, "missing_header"),
        ({"Clicktrail-Signature": None}, "missing_header"),
        ({"Clicktrail-Timestamp": "12ab"}, "malformed_header"),
        ({"Clicktrail-Timestamp": "1" * 13}, "malformed_header"),
        ({"Clicktrail-Timestamp": "-5"}, "malformed_header"),
        ({"Clicktrail-Request-Id": "has space"}, "malformed_header"),
        ({"Clicktrail-Request-Id": "x" * 129}, "malformed_header"),
        ({"Clicktrail-Signature": "v0=" + "a" * 64}, "malformed_header"),
        ({"Clicktrail-Signature": "v1=" + "a" * 63}, "malformed_header"),
        ({"Clicktrail-Signature": "v1=" + "g" * 64}, "malformed_header"),
        ({"Clicktrail-Signature": "sha256=é"}, "malformed_header"),
    ],
)
def test_missing_and_malformed_headers(change, reason):
    sent = {**headers(), **change}
    sent = {key: value for key, value in sent.items() if value is not None}
    with pytest.raises(SignatureError) as error:
        verify(sent, BODY, [SECRET], now=NOW)
    assert error.value.reason == reason


def test_header_names_are_case_insensitive_and_hex_case_is_ignored():
    sent = {key.lower(): value for key, value in headers().items()}
    sent["clicktrail-signature"] = sent["clicktrail-signature"].upper().replace("V1=", "v1=")
    assert verify(sent, BODY, [SECRET], now=NOW)


def test_signatures_are_compared_in_constant_time_only():
    source = inspect.getsource(signing)
    assert "compare_digest" in source
    for line in source.splitlines():
        code = line.split("#")[0]
        assert not ("==" in code and ("sig" in code.lower() or "digest" in code.lower())), line


@settings(max_examples=300, deadline=None)
@given(
    sent=st.dictionaries(
        st.sampled_from(["Clicktrail-Request-Id", "Clicktrail-Timestamp", "Clicktrail-Signature", "X-Other"]),
        st.text(max_size=200),
    ),
    body=st.binary(max_size=300),
)
def test_fuzzed_headers_raise_only_signature_errors(sent, body):
    with pytest.raises(SignatureError):
        verify(sent, body, [SECRET], now=NOW)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=500), request_id=st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True))
def test_sign_then_verify_round_trips(body, request_id):
    assert verify(headers(request_id=request_id, body=body), body, [SECRET], now=NOW).request_id == request_id


# --- strict JSON ---


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"a": 1, "a": 2}', "duplicate_key"),
        (b'{"a": {"b": 1, "b": 1}}', "duplicate_key"),
        (b'{"a": NaN}', "non_finite_number"),
        (b'{"a": Infinity}', "non_finite_number"),
        (b'{"a": -Infinity}', "non_finite_number"),
        (b'{"a": 1e400}', "non_finite_number"),
        (b'{"a": {"b": [-1.5e309]}}', "non_finite_number"),
        (b"\xef\xbb\xbf{}", "invalid_encoding"),
        ('{"a": "é"}'.encode("latin-1"), "invalid_encoding"),
        (b"[]", "not_an_object"),
        (b'"text"', "not_an_object"),
        (b"", "invalid_json"),
        (b"{", "invalid_json"),
        (b'{"a": ' + b"1" * 5000 + b"}", "invalid_json"),
        (b'{"a": ' + b"[" * 21 + b"]" * 21 + b"}", "too_deep"),
        (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "invalid_json"),
    ],
)
def test_strict_json_refusals(raw, reason):
    with pytest.raises(JSONError) as error:
        parse_object(raw)
    assert error.value.reason == reason


def test_strict_json_keeps_floats_visible_and_ints_exact():
    value = parse_object(b'{"amount": 10.0, "big": 12345678901234567890}')
    assert isinstance(value["amount"], float) and value["big"] == 12345678901234567890


@pytest.mark.parametrize("value", [True, 1.0, 10.0, "1", None, [1], -1, 101])
def test_require_int_refuses_everything_but_an_int_in_bounds(value):
    with pytest.raises(JSONError):
        require_int(value, "amount", minimum=0, maximum=100)


def test_require_int_and_str_accept_good_values():
    assert require_int(100, "amount", minimum=0, maximum=100) == 100
    assert require_str("abc", "name", max_length=3) == "abc"
    assert require_str(None, "name", max_length=3, optional=True) is None
    with pytest.raises(JSONError):
        require_str("abcd", "name", max_length=3)
    with pytest.raises(JSONError):
        require_str(None, "name", max_length=3)


@settings(max_examples=500, deadline=None)
@given(raw=st.binary(max_size=400) | st.text(max_size=200).map(str.encode))
def test_fuzzed_bodies_raise_only_json_errors(raw):
    with contextlib.suppress(JSONError):
        assert isinstance(parse_object(raw), dict)


# Storable text only: NUL and lone surrogates are refused by design (tests/api/test_hostile_strings.py).
STORABLE = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")


@settings(max_examples=200, deadline=None)
@given(
    value=st.dictionaries(
        st.text(STORABLE, max_size=10), st.integers() | st.text(STORABLE, max_size=20) | st.booleans(), max_size=8
    )
)
def test_valid_objects_parse_back(value):
    assert parse_object(json.dumps(value).encode()) == value


def test_modules_take_no_clock():
    for module in (signing, strict_json):
        source = inspect.getsource(module)
        assert "datetime.now" not in source and "time.time" not in source
    assert timedelta(seconds=300) == signing.TOLERANCE
