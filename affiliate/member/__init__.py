"""The member page: a referred shopper's own referral link, friends and rewards."""
