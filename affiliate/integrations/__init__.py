"""Endpoints other services call: Stripe's webhook events."""
