"""The command-line tools: create-user and seed-demo."""

from sqlalchemy import func, select

from affiliate.cli import DEMO_PASSWORD, DEMO_USERS
from affiliate.extensions import db
from affiliate.models import Program, User
from tests.factories import Auth


def _counts(app) -> tuple[int, int]:
    with app.app_context():
        return (
            db.session.scalar(select(func.count()).select_from(User)),
            db.session.scalar(select(func.count()).select_from(Program)),
        )


def test_create_user_with_password_from_environment(app, runner, client):
    result = runner.invoke(
        args=["create-user", "--email", "Ops@Example.com", "--role", "finance"],
        env={"CLICKTRAIL_PASSWORD": "a long finance passphrase"},
    )
    assert result.exit_code == 0, result.output
    assert "Created finance ops@example.com" in result.output
    assert (
        Auth(client).login("ops@example.com", "a long finance passphrase").headers["Location"] == "/admin/affiliates/"
    )


def test_create_user_prompts_and_refuses_weak_or_duplicate(app, runner):
    result = runner.invoke(args=["create-user", "--email", "a@example.com", "--role", "admin"], input="tiny\ntiny\n")
    assert result.exit_code != 0 and "at least 12 characters" in result.output
    ok = runner.invoke(
        args=["create-user", "--email", "a@example.com", "--role", "admin"],
        input="a perfectly fine one\na perfectly fine one\n",
    )
    assert ok.exit_code == 0, ok.output
    again = runner.invoke(
        args=["create-user", "--email", "A@example.com", "--role", "admin"],
        env={"CLICKTRAIL_PASSWORD": "a perfectly fine one"},
    )
    assert again.exit_code != 0 and "already exists" in again.output
    bad_role = runner.invoke(args=["create-user", "--email", "b@example.com", "--role", "root"])
    assert bad_role.exit_code != 0


def test_seed_demo_is_idempotent_and_logins_work(app, runner, client):
    first = runner.invoke(args=["seed-demo"])
    assert first.exit_code == 0, first.output
    counts = _counts(app)
    assert counts == (len(DEMO_USERS), 1)
    again = runner.invoke(args=["seed-demo"])
    assert again.exit_code == 0 and _counts(app) == counts
    if_empty = runner.invoke(args=["seed-demo", "--if-empty"])
    assert if_empty.exit_code == 0 and _counts(app) == counts
    assert "admin@demo.clicktrail.test" in if_empty.output
    auth = Auth(client)
    for _, email, _, _ in DEMO_USERS:
        assert auth.login(email, DEMO_PASSWORD).status_code == 302, email
        auth.logout()
