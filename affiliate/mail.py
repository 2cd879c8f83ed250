"""Mail: rendering messages from templates, links that work outside a request, and the SMTP sender.

Messages are queued in the outbox (affiliate/services/outbox.py) and sent by ``send_due``, which the
background sender thread of every portal process calls (affiliate/jobs.py) and ``flask send-mail``
runs on demand. Flask-Mailman talks SMTP; the SMTP_* settings configure it (docs/mail.md).
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from flask import Flask, current_app
from flask_mailman import EmailMultiAlternatives, Mail

from affiliate.extensions import db
from affiliate.models import utcnow
from affiliate.services import outbox

log = logging.getLogger(__name__)
mailman = Mail()


def init_app(app: Flask) -> None:
    """Hand the SMTP_* settings to Flask-Mailman under its own names."""
    config = app.config
    tls = config["SMTP_TLS"]
    config.update(
        MAIL_BACKEND="smtp",
        MAIL_SERVER=config["SMTP_HOST"] or "localhost",
        MAIL_PORT=config["SMTP_PORT"],
        MAIL_USERNAME=config["SMTP_USERNAME"],
        MAIL_PASSWORD=config["SMTP_PASSWORD"],
        MAIL_USE_TLS=tls == "starttls",
        MAIL_USE_SSL=tls == "ssl",
        MAIL_TIMEOUT=config["SMTP_TIMEOUT_SECONDS"],
        MAIL_DEFAULT_SENDER=config["MAIL_FROM"],
    )
    mailman.init_app(app)


def smtp_configured(app: Flask | None = None) -> bool:
    return bool((app or current_app).config.get("SMTP_HOST"))


def external_url(endpoint: str, **values) -> str:
    """An absolute link under PUBLIC_BASE_URL; works in background jobs, which have no request."""
    base = urlsplit(current_app.config["PUBLIC_BASE_URL"])
    adapter = current_app.url_map.bind(base.netloc, script_name=base.path or "/", url_scheme=base.scheme)
    return adapter.build(endpoint, values, force_external=True)


def render(template: str, **context) -> tuple[str, str]:
    """The plain-text and HTML parts of ``templates/mail/<template>.txt`` and ``.html``."""
    env = current_app.jinja_env
    context.setdefault("site_url", current_app.config["PUBLIC_BASE_URL"].rstrip("/"))
    text = env.get_template(f"mail/{template}.txt").render(context)
    html = env.get_template(f"mail/{template}.html").render(context)
    return text.strip() + "\n", html


def retry_policy() -> outbox.Retry:
    config = current_app.config
    return outbox.Retry(
        first=timedelta(seconds=config["MAIL_RETRY_FIRST_SECONDS"]),
        longest=timedelta(minutes=config["MAIL_RETRY_LONGEST_MINUTES"]),
    )


def _message(mail: outbox.Mail, connection) -> EmailMultiAlternatives:
    sender = current_app.config["MAIL_FROM"]
    domain = sender.rpartition("@")[2].strip(" >") or "clicktrail.invalid"
    headers = {
        # The same Message-ID on every try, so a receiver can drop the copy a resend after a crash makes.
        "Message-ID": f"<clicktrail-outbox-{mail.id}@{domain}>",
        "Auto-Submitted": "auto-generated",
    }
    if mail.unsubscribe_url:
        headers["List-Unsubscribe"] = f"<{mail.unsubscribe_url}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message = EmailMultiAlternatives(mail.subject, mail.text, sender, [mail.to], headers=headers, connection=connection)
    message.attach_alternative(mail.html, "text/html")
    return message


def send_due(*, clock: Callable[[], datetime] = utcnow, limit: int = 50) -> tuple[int, int]:
    """Send one round of due mail; returns (sent, failed). Does nothing without SMTP_HOST."""
    if not smtp_configured():
        return 0, 0
    hold = timedelta(seconds=current_app.config["MAIL_CLAIM_SECONDS"])
    try:
        claimed = outbox.claim_due(db.session, now=clock(), hold=hold, limit=limit)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    if not claimed:
        _purge_sent(clock())
        return 0, 0
    sent = failed = 0
    retry = retry_policy()
    connection = None
    try:
        connection = mailman.get_connection(fail_silently=False)
        connection.open()
    except (OSError, smtplib.SMTPException) as error:
        # Each message was tried with the server, so each try counts and the next one waits longer.
        for claim in claimed:
            mail = outbox.keep_claim(db.session, claim, now=clock(), hold=hold)
            if mail is not None:
                outbox.mark_failed(
                    db.session, mail.id, error=_describe(error), attempt=mail.attempt, retry=retry, now=clock()
                )
        db.session.commit()
        log.warning("SMTP server unreachable (%s); %d messages wait for the next try", _describe(error), len(claimed))
        return 0, len(claimed)
    try:
        for claim in claimed:
            # A slow SMTP server can outlast the claim: send only what is still this sender's (claim extended, try
            # counted).
            mail = outbox.keep_claim(db.session, claim, now=clock(), hold=hold)
            db.session.commit()
            if mail is None:
                continue
            try:
                _message(mail, connection).send(fail_silently=False)
            except (OSError, smtplib.SMTPException) as error:
                failed += 1
                outbox.mark_failed(
                    db.session, mail.id, error=_describe(error), attempt=mail.attempt, retry=retry, now=clock()
                )
            else:
                sent += 1
                outbox.mark_sent(db.session, mail.id, now=clock())
            db.session.commit()
    finally:
        with contextlib.suppress(OSError, smtplib.SMTPException):
            connection.close()
    return sent, failed


def _purge_sent(now: datetime) -> None:
    """When the sender is idle, forget mail delivered more than MAIL_KEEP_DAYS ago (0 keeps it)."""
    days = current_app.config["MAIL_KEEP_DAYS"]
    if days > 0 and outbox.purge_sent(db.session, before=now - timedelta(days=days)):
        db.session.commit()
    else:
        db.session.rollback()


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[: outbox.ERROR_MAX]
