"""Fixtures of the delivery tests: receivers and a clock (tests/webhooks/receivers.py), and tests/mail's SMTP server."""

from tests.mail.conftest import deliver, smtp  # noqa: F401 - fixtures
from tests.webhooks.receivers import certificates, clock, hooks, tracker  # noqa: F401 - fixtures
