"""The command-line tools: create-user and seed-demo."""

from sqlalchemy import func, select

from affiliate.cli import DEMO_PASSWORD, DEMO_USERS
from affiliate.extensions import db
from affiliate.models import Conversion, Program, User
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
    with app.app_context():
        statuses = dict(db.session.execute(select(Conversion.status, func.count()).group_by(Conversion.status)).all())
    assert sum(statuses.values()) == 60 and statuses["flagged"] and statuses["rejected"], statuses
    again = runner.invoke(args=["seed-demo"])
    assert again.exit_code == 0 and _counts(app) == counts
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Conversion)) == 60
    if_empty = runner.invoke(args=["seed-demo", "--if-empty"])
    assert if_empty.exit_code == 0 and _counts(app) == counts
    assert "admin@demo.clicktrail.test" in if_empty.output
    auth = Auth(client)
    for _, email, _, _ in DEMO_USERS:
        assert auth.login(email, DEMO_PASSWORD).status_code == 302, email
        auth.logout()


def test_ingest_clicks_moves_a_dead_redirectors_log_into_the_database(app, runner, tmp_path):
    import os
    import subprocess
    import sys
    import textwrap

    from affiliate.models import Click
    from tests.redirector.helpers import setup_link

    s = setup_link(app)
    log_dir = app.config["CLICK_LOG_DIR"]
    record = {"click_id": "01M8DEADPROCESSxxxxxxxxxxxxxxxx1", "link_id": s.link.id, "affiliate_id": s.affiliate.id,
              "program_id": s.program.id, "clicked_at": "2026-11-24T01:00:00+00:00", "is_bot": False,
              "visitor_id": "01M8VISITORxxxxxxxxxxxxxxxxxxxx", "fingerprint": "f" * 32, "fraud_score": 0}  # fmt: skip
    script = textwrap.dedent(f"""
        import os
        from redirector.clicklog import ClickLog
        log = ClickLog({log_dir!r}, 1 << 16)
        log.open()
        log.append([{record!r}])
        os._exit(0)
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", script], cwd=root, env={**os.environ, "PYTHONPATH": root}, check=True,
                   timeout=30)  # fmt: skip
    result = runner.invoke(args=["ingest-clicks"])
    assert result.exit_code == 0, result.output
    assert "Ingested 1 clicks" in result.output
    with app.app_context():
        [click] = db.session.scalars(select(Click)).all()
        assert click.click_id == record["click_id"] and click.is_unique is True
