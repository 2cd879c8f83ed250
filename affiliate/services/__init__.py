"""Domain services: plain functions over a session, the caller owns the commit."""
