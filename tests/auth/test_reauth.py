"""The re-authentication page: the password again, then back to one of our own pages."""

from __future__ import annotations

from tests.factories import PASSWORD, Auth, csrf_token, make_finance, recovery_codes


def test_reauth_only_returns_to_our_own_pages(app, client):
    assert client.get("/reauth").headers["Location"].startswith("/login"), "signed out: sign in first"
    finance = make_finance(app)
    Auth(client).login(finance.email)
    for target, landing in (
        ("/finance/payouts/", "/finance/payouts/"),
        ("https://evil.test/steal", "/finance/"),
        ("//evil.test/", "/finance/"),
        ("/%09/evil.test", "/finance/"),
    ):
        url = f"/reauth?next={target}"
        token = csrf_token(client.get(url).get_data(as_text=True))
        code = recovery_codes[finance.email].pop()
        response = client.post(url, data={"password": PASSWORD, "code": code, "csrf_token": token})
        assert response.status_code == 302 and response.headers["Location"] == landing, target
