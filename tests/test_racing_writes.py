"""A write that meets a row another request stored first (a form sent twice at once) is a 409 that says so, with the
session rolled back so the page can still be drawn, never a 500."""

from __future__ import annotations

from sqlalchemy import text

from affiliate.extensions import csrf, db
from tests.conftest import build_app, dispose
from tests.factories import Auth, make_affiliate

COPIED = "name, email, role, status, referral_code, created_at"


def test_a_unique_key_met_by_a_racing_write_is_a_409_page_not_a_500(database_uri):
    app = build_app(database_uri)

    @app.post("/racing-write")
    @csrf.exempt
    def racing_write():
        # The insert a second request at once would make: the unique key the first one stored is met.
        db.session.execute(text(f"INSERT INTO users ({COPIED}) SELECT {COPIED} FROM users LIMIT 1"))
        return "stored"

    try:
        alice = make_affiliate(app)
        client = app.test_client()
        Auth(client).login(alice.email)
        page = client.post("/racing-write")
        assert page.status_code == 409 and "changed by another request" in page.get_data(as_text=True)
        assert client.get("/partner/").status_code == 200, "the session is usable after"
    finally:
        dispose(app)
