"""The account tests read the mail they cause from a real SMTP server on loopback (tests/mail)."""

from tests.mail.conftest import app, deliver, smtp  # noqa: F401 - fixtures used by these tests
