"""A signed-in person's own account: profile, payout details, password."""
