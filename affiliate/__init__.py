"""Clicktrail's partner portal: the Flask app factory."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Config, config_from_env

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def create_app(config_class: type[Config] | None = None, overrides: dict | None = None) -> Flask:
    """Build the portal app: configuration, extensions, blueprints, errors, commands."""
    config_class = config_class or config_from_env()
    overrides = overrides or {}
    app = Flask(
        __name__,
        template_folder=str(PROJECT_ROOT / "templates"),
        instance_path=overrides.get("INSTANCE_PATH", config_class.INSTANCE_PATH),
    )
    app.config.from_object(config_class)
    app.config.update(overrides)
    config_class.init_app(app)

    register_extensions(app)
    register_converters(app)
    register_read_only_requests(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_security(app)
    register_template_helpers(app)
    register_commands(app)
    register_jobs(app)
    return app


def register_extensions(app: Flask) -> None:
    from affiliate import mail
    from affiliate.auth.hashing import BackgroundHasher
    from affiliate.auth.sessions import init_login
    from affiliate.database import configure_engine
    from affiliate.extensions import csrf, db, migrate

    db.init_app(app)
    with app.app_context():
        for engine in db.engines.values():
            configure_engine(engine)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))
    csrf.init_app(app)
    init_login(app)
    mail.init_app(app)
    app.extensions["clicktrail.hasher"] = BackgroundHasher(
        time_cost=app.config["ARGON2_TIME_COST"],
        memory_cost=app.config["ARGON2_MEMORY_KIB"],
        parallelism=app.config["ARGON2_PARALLELISM"],
    )


def register_converters(app: Flask) -> None:
    """Before any route is added: ``<int:...>`` matches only ids the database could hold (others are 404)."""
    from affiliate.params import BigIdConverter, IdConverter

    app.url_map.converters["int"] = IdConverter
    app.url_map.converters["bigid"] = BigIdConverter


def register_read_only_requests(app: Flask) -> None:
    """GET, HEAD and OPTIONS never change anything, so their transactions only read."""
    from flask import g, request

    from affiliate.database import read_only

    @app.before_request
    def mark_read_only() -> None:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            g.read_only_token = read_only.set(True)

    @app.teardown_request
    def clear_read_only(exc: BaseException | None) -> None:
        token = g.pop("read_only_token", None)
        if token is not None:
            read_only.reset(token)


def register_blueprints(app: Flask) -> None:
    from affiliate.account.notifications import bp as notifications_bp
    from affiliate.account.routes import bp as account_bp
    from affiliate.account.two_factor import bp as two_factor_bp
    from affiliate.account.two_factor import init_app as require_staff_second_factor
    from affiliate.admin.affiliates import bp as affiliates_bp
    from affiliate.admin.api_keys import bp as api_keys_bp
    from affiliate.admin.coupons import bp as coupons_bp
    from affiliate.admin.enrollments import bp as enrollments_bp
    from affiliate.admin.groups import bp as groups_bp
    from affiliate.admin.outbox import bp as outbox_bp
    from affiliate.admin.people import bp as people_bp
    from affiliate.admin.plans import bp as plans_bp
    from affiliate.admin.programs import bp as programs_bp
    from affiliate.admin.routes import bp as admin_bp
    from affiliate.admin.webhooks import bp as webhooks_bp
    from affiliate.api import webhooks as webhooks_api  # noqa: F401 - adds the webhook routes to the management API
    from affiliate.api.management import bp as management_api_bp
    from affiliate.api.routes import bp as api_bp
    from affiliate.auth.routes import bp as auth_bp
    from affiliate.conversions.routes import partner as partner_conversions_bp
    from affiliate.conversions.routes import staff as conversions_bp
    from affiliate.finance.adjustments import bp as adjustments_bp
    from affiliate.finance.audit import bp as finance_audit_bp
    from affiliate.finance.payouts import bp as payouts_bp
    from affiliate.integrations.stripe import bp as stripe_integration_bp
    from affiliate.links.routes import bp as links_bp
    from affiliate.main.routes import bp as main_bp
    from affiliate.member.routes import bp as member_bp
    from affiliate.partner.coupons import bp as partner_coupons_bp
    from affiliate.partner.earnings import bp as earnings_bp
    from affiliate.partner.postbacks import bp as partner_postbacks_bp
    from affiliate.partner.routes import bp as partner_bp
    from affiliate.reports.routes import partner as partner_reports_bp
    from affiliate.reports.routes import staff as staff_reports_bp
    from affiliate.review.commissions import bp as finance_commissions_bp
    from affiliate.review.routes import review as review_bp
    from affiliate.review.routes import rules as fraud_rules_bp

    blueprints = (
        *(main_bp, auth_bp, account_bp, two_factor_bp, notifications_bp, member_bp, partner_bp, links_bp),
        *(partner_conversions_bp, earnings_bp, partner_postbacks_bp, partner_coupons_bp),
        *(
            admin_bp,
            affiliates_bp,
            programs_bp,
            plans_bp,
            groups_bp,
            enrollments_bp,
            api_keys_bp,
            webhooks_bp,
            coupons_bp,
            outbox_bp,
            people_bp,
            fraud_rules_bp,
            conversions_bp,
            review_bp,
        ),
        *(finance_commissions_bp, payouts_bp, adjustments_bp, finance_audit_bp, api_bp, management_api_bp),
        *(partner_reports_bp, staff_reports_bp, stripe_integration_bp),
    )
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    require_staff_second_factor(app)
    if app.config["DEMO_SHOP"]:
        from affiliate.demo_shop.routes import bp as demo_shop_bp

        app.register_blueprint(demo_shop_bp)


def register_errorhandlers(app: Flask) -> None:
    from affiliate.errors import register

    register(app)


def register_security(app: Flask) -> None:
    from affiliate.addresses import UnmapClientAddress
    from affiliate.security import add_security_headers, refuse_unstorable_arguments

    app.before_request(refuse_unstorable_arguments)
    app.after_request(add_security_headers)
    # Inside ProxyFix, so that the address it takes from X-Forwarded-For is unmapped too.
    app.wsgi_app = UnmapClientAddress(app.wsgi_app)
    proxies = app.config["TRUSTED_PROXY_COUNT"]
    if proxies > 0:
        # Only then is X-Forwarded-For believed, and only the hops our own proxies added.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)


def register_template_helpers(app: Flask) -> None:
    from affiliate.money import format_amount

    app.add_template_filter(format_amount, "money")
    app.jinja_env.globals["public_base_url"] = app.config["PUBLIC_BASE_URL"].rstrip("/")


def register_jobs(app: Flask) -> None:
    from affiliate import jobs

    jobs.init_app(app)


def register_commands(app: Flask) -> None:
    from affiliate.cli import commands

    for command in commands:
        app.cli.add_command(command)
