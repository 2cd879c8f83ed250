"""seed-demo leaves the report pages with data, also for a demo seeded before the click rollups existed."""

from __future__ import annotations

from sqlalchemy import text

from affiliate.demo import DEMO_PASSWORD
from affiliate.extensions import db
from tests.factories import Auth
from tests.reports.helpers import stored_rollups
from tests.reports.test_pages import figures


def test_seed_demo_gives_the_dashboards_data(app, runner):
    assert runner.invoke(args=["seed-demo"]).exit_code == 0
    rollups = stored_rollups(app)
    client = app.test_client()
    assert Auth(client).login("alice@demo.clicktrail.example", DEMO_PASSWORD).status_code == 302
    shown = figures(client.get("/partner/reports/").get_data(as_text=True))
    count = {name: int(shown[name].replace(",", "")) for name in ("raw", "excluded", "sales")}  # "1,524"
    assert shown["raw"].count(",") == (count["raw"] >= 1000), "thousands are separated"
    assert count["raw"] > 500 and count["excluded"] > 0 and count["sales"] > 10
    assert shown["revenue"].startswith("$") and shown["commissions-pending"].startswith("$")
    staff = app.test_client()
    assert Auth(staff).login("finance@demo.clicktrail.example", DEMO_PASSWORD).status_code == 302
    Auth(staff).enrol("finance@demo.clicktrail.example")  # staff set up two-factor sign-in first
    overview = staff.get("/admin/reports/").get_data(as_text=True)
    assert "Alice Affiliate" in overview and "Bob Blogger" in overview

    # A demo database from before the rollups: its clicks are counted when seed-demo runs again.
    with app.app_context():
        db.session.execute(text("DELETE FROM click_rollups"))
        db.session.commit()
    again = runner.invoke(args=["seed-demo", "--if-empty"])
    assert again.exit_code == 0 and "Rebuilt the click rollups from 2500 clicks." in again.output
    assert stored_rollups(app) == rollups
