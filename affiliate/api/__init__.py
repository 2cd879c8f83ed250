"""The merchant API: signed, idempotent conversions and refunds, and its OpenAPI document."""
