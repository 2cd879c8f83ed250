"""Finance's payout batches, yearly payout report and money audit log."""
