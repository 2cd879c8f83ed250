"""Referral codes: unguessable, unambiguous, and collision-safe."""

import math

from affiliate.services.accounts import REFERRAL_ALPHABET, REFERRAL_CODE_LENGTH, generate_referral_code


def test_codes_use_no_look_alike_characters():
    assert not set("01ILO") & set(REFERRAL_ALPHABET)
    codes = {generate_referral_code() for _ in range(5000)}
    assert len(codes) == 5000
    for code in codes:
        assert len(code) == REFERRAL_CODE_LENGTH and set(code) <= set(REFERRAL_ALPHABET)


def test_codes_carry_enough_entropy_to_be_unguessable():
    assert REFERRAL_CODE_LENGTH * math.log2(len(REFERRAL_ALPHABET)) >= 48
