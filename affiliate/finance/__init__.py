"""Finance's pages under /finance/: the review queue, commissions, payout batches, adjustments, the money audit log."""
