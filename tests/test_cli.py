"""The command-line tools: create-user and seed-demo."""

import pytest
from sqlalchemy import func, select, update

from affiliate.demo import DEMO_PARTNERS, DEMO_PASSWORD, DEMO_PROGRAM, DEMO_USERS
from affiliate.demo_shop.credentials import credentials_path, load
from affiliate.extensions import db
from affiliate.models import STAFF_ROLES, ApiKey, Commission, Conversion, Link, PartnerGroup, Program, User, utcnow
from affiliate.services import groups
from affiliate.services.api_keys import find_key, revoke_key
from affiliate.services.payouts import build_batch
from redirector import create_redirector
from tests.conftest import build_app, dispose
from tests.factories import Auth, Visitor
from tests.redirector.helpers import CHROME


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
    assert Auth(client).login("ops@example.com", "a long finance passphrase").headers["Location"] == "/finance/"


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
    _the_demo_is_ready_for_the_program_and_payout_journeys(app)
    again = runner.invoke(args=["seed-demo"])
    assert again.exit_code == 0 and _counts(app) == counts
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Conversion)) == 60
    if_empty = runner.invoke(args=["seed-demo", "--if-empty"])
    assert if_empty.exit_code == 0 and _counts(app) == counts
    assert "admin@demo.clicktrail.example" in if_empty.output
    auth = Auth(client)
    for _, email, role, _ in DEMO_USERS:
        assert auth.login(email, DEMO_PASSWORD).status_code == 302, email
        if role in STAFF_ROLES:  # staff set up two-factor sign-in first, then sign in with it
            assert client.get("/").status_code in (200, 302)
            assert client.get("/account/").headers["Location"] == "/account/two-factor/"
            auth.enrol(email)
            auth.logout()
            assert auth.login(email, DEMO_PASSWORD).status_code == 302
            assert client.get("/account/").status_code == 200
        auth.logout()


def _the_demo_is_ready_for_the_program_and_payout_journeys(app) -> None:
    """Two groups (the default's 10% and VIP's revenue tiers, which paid Bob), Alice recruited Bob, and
    Alice can be paid at once: details past their cooling-off, commissions past their hold."""
    alice_email, bob_email = DEMO_PARTNERS
    with app.app_context():
        alice = db.session.scalar(select(User).where(User.email == alice_email))
        bob = db.session.scalar(select(User).where(User.email == bob_email))
        assert bob.referred_by_id == alice.id
        [vip] = db.session.scalars(select(PartnerGroup)).all()
        assert vip.name == "VIP" and groups.group_of(db.session, vip.program_id, bob.id) == vip.id
        assert groups.group_of(db.session, vip.program_id, alice.id) is None
        rules = set(db.session.scalars(select(Commission.rule).where(Commission.affiliate_id == bob.id)))
        assert any("tier from" in rule and "group VIP" in rule for rule in rules), rules
        assert all(
            "default group" in rule
            for rule in db.session.scalars(
                select(Commission.rule).where(Commission.affiliate_id == alice.id, Commission.kind == "earning")
            )
        )
        assert db.session.scalar(
            select(func.count()).where(Commission.affiliate_id == alice.id, Commission.kind == "second_tier")
        )
        finance = db.session.scalar(select(User).where(User.email == DEMO_USERS[1][1]))
        batch, held = build_batch(db.session, "USD", actor=finance, now=utcnow())
        assert batch is not None and alice.id in {payout.affiliate_id for payout in batch.payouts}, held
        db.session.rollback()


def test_ingest_clicks_moves_a_dead_redirectors_log_into_the_database(app, runner, tmp_path):
    import os
    import subprocess
    import sys
    import textwrap

    from affiliate.models import Click
    from tests.redirector.helpers import setup_link

    s = setup_link(app)
    log_dir = app.config["CLICK_LOG_DIR"]
    record = {
        "click_id": "01M8DEADPROCESSxxxxxxxxxxxxxxxx1",
        "link_id": s.link.id,
        "affiliate_id": s.affiliate.id,
        "program_id": s.program.id,
        "clicked_at": "2026-11-24T01:00:00+00:00",
        "is_bot": False,
        "visitor_id": "01M8VISITORxxxxxxxxxxxxxxxxxxxx",
        "fingerprint": "f" * 32,
        "fraud_score": 0,
    }
    script = textwrap.dedent(f"""
        import os
        from redirector.clicklog import ClickLog
        log = ClickLog({log_dir!r}, 1 << 16)
        log.open()
        log.append([{record!r}])
        os._exit(0)
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run(
        [sys.executable, "-c", script], cwd=root, env={**os.environ, "PYTHONPATH": root}, check=True, timeout=30
    )
    result = runner.invoke(args=["ingest-clicks"])
    assert result.exit_code == 0, result.output
    assert "Ingested 1 clicks" in result.output
    with app.app_context():
        [click] = db.session.scalars(select(Click)).all()
        assert click.click_id == record["click_id"] and click.is_unique is True


def test_seed_demo_points_the_demo_program_at_the_demo_shop_and_gives_the_shop_a_key(database_uri):
    shop = "http://127.0.0.1:8765/demo-shop/"
    app = build_app(database_uri, ALLOW_HTTP_LOOPBACK_DESTINATIONS=True, PUBLIC_BASE_URL="http://127.0.0.1:8765")
    runner = app.test_cli_runner()
    seeded = runner.invoke(args=["seed-demo"])
    assert seeded.exit_code == 0, seeded.output
    assert f"The Demo Store program sends shoppers to {shop}." in seeded.output
    path = credentials_path(app.config["INSTANCE_PATH"])
    assert path.stat().st_mode & 0o777 == 0o600
    kept = load(path)
    with app.app_context():
        program = db.session.scalar(select(Program).where(Program.name == DEMO_PROGRAM.name))
        assert (program.destination_url, program.fallback_url, program.allowed_host_list) == (shop, shop, [])
        key = find_key(db.session, kept.api_key)
        assert key.program_id == kept.program_id == program.id and key.signing_secret == kept.signing_secret
        assert kept.currency == program.currency
        codes = db.session.scalars(select(Link.code)).all()
    # Every demo link, deep links included, lands in the shop.
    redirector = create_redirector(app.config)
    for code in codes:
        location = Visitor(redirector).get(f"/r/{code}", headers={"User-Agent": CHROME}).headers["Location"]
        assert location.startswith(shop) and "ct_click=" in location, location
    redirector.close()

    # Seeding again keeps a working key; a revoked one is replaced (and the shop's old keys stay revoked).
    before = path.read_text()
    assert runner.invoke(args=["seed-demo", "--if-empty"]).exit_code == 0 and path.read_text() == before
    with app.app_context():
        admin = db.session.scalar(select(User).where(User.role == "admin"))
        revoke_key(db.session, db.session.get(ApiKey, key.id), actor=admin, now=utcnow())
        db.session.commit()
    reissued = runner.invoke(args=["seed-demo", "--if-empty"])
    assert "Issued the demo shop an API key" in reissued.output and load(path).api_key != kept.api_key
    with app.app_context():
        assert find_key(db.session, load(path).api_key).program_id == program.id
        assert db.session.scalar(select(func.count()).where(ApiKey.revoked_at.is_(None))) == 1

    # Without the setting the demo program goes back to the placeholder merchant, and with it to the shop again.
    off = build_app(database_uri, INSTANCE_PATH=app.config["INSTANCE_PATH"])
    placeholder = off.test_cli_runner().invoke(args=["seed-demo", "--if-empty"])
    assert f"sends shoppers to the placeholder {DEMO_PROGRAM.destination_url}" in placeholder.output
    assert _destination(app) == DEMO_PROGRAM.destination_url
    assert runner.invoke(args=["seed-demo", "--if-empty"]).exit_code == 0 and _destination(app) == shop

    # A destination an admin chose is theirs: seeding leaves it alone.
    with app.app_context():
        db.session.execute(update(Program).values(destination_url="https://merchant.example.org/"))
        db.session.commit()
    assert runner.invoke(args=["seed-demo", "--if-empty"]).exit_code == 0
    assert _destination(app) == "https://merchant.example.org/"
    dispose(off)
    dispose(app)


def _destination(app) -> str:
    with app.app_context():
        return db.session.scalar(select(Program.destination_url).where(Program.name == DEMO_PROGRAM.name))


@pytest.mark.parametrize(
    "args",
    [
        ["create-user", "--email", "not-an-email", "--role", "admin"],
        ["create-user", "--email", "a" * 250 + "@example.com", "--role", "admin"],
        ["create-user", "--email", "long.name@example.com", "--name", "x" * 5000, "--role", "admin"],
        ["create-user", "--email", "nul.name@example.com", "--name", "a\x00b", "--role", "admin"],
        ["send-webhooks", "--loop", "--every", "nan"],
        ["send-mail", "--loop", "--every", "nan"],
        ["erase-person", "--visitor-id", "\udcff", "--yes"],
        ["erase-person", "--email", "x" * 1000, "--yes"],
    ],
    ids=["bad-email", "long-email", "long-name", "nul-name", "webhooks-nan", "mail-nan", "surrogate", "huge-value"],
)
def test_commands_answer_odd_arguments_with_a_usage_error_not_a_traceback(app, runner, args):
    from affiliate.models import User

    result = runner.invoke(args=args, env={"CLICKTRAIL_PASSWORD": "a long enough password"})
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Error" in result.output and "Traceback" not in result.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 0
