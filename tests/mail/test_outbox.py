"""The outbox and its sender: mail written with its event, sent through real SMTP, retried, never lost."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from affiliate import mail
from affiliate.extensions import db
from affiliate.models import OutboxMessage, utcnow
from affiliate.services import outbox
from tests.factories import make_admin
from tests.mail.conftest import send_outbox
from tests.mail.smtp import html_of, text_of


def queue(app, to: str = "ann@example.com", subject: str = "Hello", *, at=None) -> int:
    with app.app_context():
        message = outbox.queue(
            db.session,
            kind="test",
            to=to,
            subject=subject,
            text="Plain words\n",
            html="<p>Rich words</p>",
            now=at or utcnow(),
            unsubscribe_url="http://portal.test/unsubscribe/x",
        )
        db.session.commit()
        return message.id


def row(app, message_id: int) -> OutboxMessage:
    with app.app_context():
        found = db.session.get(OutboxMessage, message_id)
        db.session.expunge(found)
        return found


def test_a_queued_message_arrives_with_both_parts_and_one_click_unsubscribe(app, smtp, deliver):
    message_id = queue(app)
    assert deliver() == (1, 0)
    [received] = smtp.inbox.wait_for(lambda got: len(got) == 1)
    assert received["To"] == "ann@example.com"
    assert received["Subject"] == "Hello"
    assert text_of(received).strip() == "Plain words"
    assert "Rich words" in html_of(received)
    assert received["List-Unsubscribe"] == "<http://portal.test/unsubscribe/x>"
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert received["Message-ID"] == f"<clicktrail-outbox-{message_id}@clicktrail.example>"
    assert row(app, message_id).sent_at is not None
    assert deliver() == (0, 0), "a sent message is never sent again"


def test_a_refusing_server_means_retries_with_growing_delays_and_nothing_lost(app, smtp):
    smtp.inbox.refuse = True
    start = utcnow()
    message_id = queue(app, at=start)
    clock = {"now": start}

    def round_at(seconds: float) -> tuple[int, int]:
        clock["now"] = start + timedelta(seconds=seconds)
        with app.app_context():
            try:
                return mail.send_due(clock=lambda: clock["now"])
            finally:
                db.session.remove()

    assert round_at(0) == (0, 1)
    first = row(app, message_id)
    assert first.attempts == 1 and "451" in first.last_error
    assert first.next_attempt_at == start + timedelta(seconds=30)
    assert round_at(29) == (0, 0), "not due before its delay"
    assert round_at(30) == (0, 1)
    assert row(app, message_id).next_attempt_at == start + timedelta(seconds=30 + 60)
    assert round_at(90) == (0, 1)
    assert row(app, message_id).next_attempt_at == start + timedelta(seconds=90 + 120)
    # Much later the delay stops growing at the longest (60 minutes by default).
    for attempt_at in (210, 450, 930, 1890, 3810, 7650):
        assert round_at(attempt_at) == (0, 1)
    assert row(app, message_id).next_attempt_at == start + timedelta(seconds=7650 + 3600)
    smtp.inbox.refuse = False
    assert round_at(7650 + 3600) == (1, 0)
    assert [m["Subject"] for m in smtp.inbox.messages] == ["Hello"]
    assert row(app, message_id).sent_at is not None


def test_an_unreachable_server_leaves_mail_waiting(app, smtp):
    message_id = queue(app)
    smtp.stop()
    assert send_outbox(app) == (0, 1)
    waiting = row(app, message_id)
    assert waiting.sent_at is None and waiting.attempts == 1
    assert "Connection refused" in waiting.last_error or "Errno" in waiting.last_error


def test_without_smtp_mail_stays_in_the_outbox_and_the_admin_can_read_it(database_uri):
    from tests.conftest import build_app, dispose
    from tests.factories import Auth

    app = build_app(database_uri)
    try:
        message_id = queue(app, subject="Reset your password")
        assert send_outbox(app) == (0, 0)
        assert row(app, message_id).sent_at is None
        admin = make_admin(app)
        client = app.test_client()
        Auth(client).login(admin.email)
        page = client.get("/admin/outbox/").get_data(as_text=True)
        assert "No SMTP server is set" in page and "Reset your password" in page
        body = client.get(f"/admin/outbox/{message_id}").get_data(as_text=True)
        assert "Plain words" in body
    finally:
        dispose(app)


def test_the_admin_cannot_read_mail_once_it_is_delivered_by_smtp(app, client, auth):
    message_id = queue(app)
    admin = make_admin(app)
    auth.login(admin.email)
    assert "Hello" in client.get("/admin/outbox/").get_data(as_text=True)
    assert client.get(f"/admin/outbox/{message_id}").status_code == 404
    with app.app_context():
        assert db.session.scalars(select(OutboxMessage.id)).all() == [message_id]


def test_delivered_mail_is_forgotten_after_the_keep_days_and_waiting_mail_never(app, smtp):
    start = utcnow()
    old = queue(app, subject="Old", at=start)
    with app.app_context():
        assert mail.send_due(clock=lambda: start) == (1, 0)
        db.session.remove()
    waiting = queue(app, subject="Waiting", at=start)
    smtp.inbox.refuse = True
    later = start + timedelta(days=app.config["MAIL_KEEP_DAYS"], seconds=1)
    with app.app_context():
        mail.send_due(clock=lambda: start)  # fails: due again later
        assert mail.send_due(clock=lambda: later) == (0, 1)
        assert mail.send_due(clock=lambda: later) == (0, 0), "idle: purges"
        remaining = db.session.scalars(select(OutboxMessage.id)).all()
        db.session.remove()
    assert remaining == [waiting] and old not in remaining
