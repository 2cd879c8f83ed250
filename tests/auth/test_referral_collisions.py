"""A drawn referral code that is already taken is drawn again, not a failure."""

from affiliate.services import accounts
from tests.factories import make_affiliate


def test_collision_draws_again(app, monkeypatch):
    first = make_affiliate(app)
    draws = iter([first.referral_code, first.referral_code, "NEWCODE234"])
    monkeypatch.setattr(accounts, "generate_referral_code", lambda: next(draws))
    second = make_affiliate(app)
    assert second.referral_code == "NEWCODE234"
