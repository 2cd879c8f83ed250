"""The partner (affiliate) pages under /partner/: home, links, conversions, earnings, reports, coupons, postbacks."""
