"""Finance's review queue of flagged conversions, and admins' fraud rule settings per program."""
