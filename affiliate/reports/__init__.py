"""Reports for affiliates (their own traffic and earnings) and for staff (programs, affiliates, fraud, payouts)."""
