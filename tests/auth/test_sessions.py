"""Cookies captured before logout or a password change stop working."""

from tests.factories import PASSWORD, make_admin, make_affiliate, make_finance


def _cookies(client) -> dict[str, str]:
    return {cookie.key: cookie.value for cookie in client._cookies.values()}


def _replay(app, cookies: dict[str, str], path: str = "/account/"):
    thief = app.test_client()
    for name, value in cookies.items():
        thief.set_cookie(name, value)
    return thief.get(path)


def test_session_cookie_captured_before_logout_stops_working(app, client, auth):
    alice = make_affiliate(app)
    auth.login(alice.email)
    captured = _cookies(client)
    assert _replay(app, captured).status_code == 200
    auth.logout()
    response = _replay(app, captured)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_remember_cookie_captured_before_logout_stops_working(app, client, auth):
    alice = make_affiliate(app)
    auth.login(alice.email, remember=True)
    remember = {k: v for k, v in _cookies(client).items() if k == "clicktrail_remember"}
    assert remember, "affiliates may choose to stay signed in"
    assert _replay(app, remember).status_code == 200
    auth.logout()
    assert _replay(app, remember).status_code == 302
    assert "clicktrail_remember" not in _cookies(client), "signing out takes the remember cookie off the browser"


def test_password_change_ends_other_logins_but_keeps_this_one(app, client, auth):
    alice = make_affiliate(app)
    auth.login(alice.email, remember=True)
    captured = _cookies(client)
    response = auth.post(
        "/account/password", {"current": PASSWORD, "new": "a brand new passphrase", "confirm": "a brand new passphrase"}
    )
    assert response.status_code == 302
    assert client.get("/account/").status_code == 200
    assert _replay(app, captured).status_code == 302
    assert _replay(app, {"clicktrail_remember": captured["clicktrail_remember"]}).status_code == 302
    auth.logout()
    assert auth.login(alice.email).status_code == 200  # old password no longer works
    assert auth.login(alice.email, "a brand new passphrase").status_code == 302


def test_wrong_current_password_changes_nothing(app, client, auth):
    alice = make_affiliate(app)
    auth.login(alice.email)
    response = auth.post(
        "/account/password",
        {"current": "not it at all", "new": "a brand new passphrase", "confirm": "a brand new passphrase"},
    )
    assert response.status_code == 200
    assert "current password is incorrect" in response.get_data(as_text=True)
    auth.logout()
    assert auth.login(alice.email).status_code == 302


def test_staff_never_get_a_remember_cookie(app, client, auth):
    for user in (make_admin(app), make_finance(app)):
        auth.login(user.email, remember=True)
        assert "clicktrail_remember" not in _cookies(client)
        auth.logout()


def test_cookie_flags(app, client, auth):
    alice = make_affiliate(app)
    response = auth.login(alice.email, remember=True)
    set_cookies = response.headers.getlist("Set-Cookie")
    assert set_cookies
    for header in set_cookies:
        assert "HttpOnly" in header and "SameSite=Lax" in header, header


def test_production_cookies_are_secure():
    from config import ProductionConfig

    assert ProductionConfig.SESSION_COOKIE_SECURE is True
    assert ProductionConfig.REMEMBER_COOKIE_SECURE is True


def _session_ip(app) -> str:
    from sqlalchemy import select

    from affiliate.extensions import db
    from affiliate.models import UserSession

    with app.app_context():
        return db.session.scalars(select(UserSession.ip).order_by(UserSession.id.desc())).first()


def test_spoofed_forwarded_for_is_ignored_by_the_portal(app, client, auth):
    """Without trusted proxies the socket peer is the client, whatever X-Forwarded-For says."""
    alice = make_affiliate(app)
    token = auth.token()
    client.post(
        "/login",
        data={"email": alice.email, "password": PASSWORD, "csrf_token": token},
        headers={"X-Forwarded-For": "8.8.8.8"},
        environ_base={"REMOTE_ADDR": "198.51.100.9"},
    )
    assert _session_ip(app) == "198.51.100.9"


def test_trusted_proxy_hop_is_believed(database_uri):
    from tests.conftest import build_app
    from tests.factories import Auth

    app = build_app(database_uri, TRUSTED_PROXY_COUNT=1)
    alice = make_affiliate(app)
    client = app.test_client()
    token = Auth(client).token()
    client.post(
        "/login",
        data={"email": alice.email, "password": PASSWORD, "csrf_token": token},
        headers={"X-Forwarded-For": "8.8.8.8, 203.0.113.20"},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )
    assert _session_ip(app) == "203.0.113.20"
