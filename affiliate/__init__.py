"""Clicktrail's partner portal: the Flask app factory."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Config, config_from_env

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Portal(Flask):
    """Flask, with each request's work run again when it failed for a reason the person has nothing to do with:
    PostgreSQL ended its transaction to break a deadlock (affiliate.database.retrying: the loser kept nothing), or
    a report's reads failed on the replica, now passed over for the primary (affiliate.replica)."""

    def dispatch_request(self):
        from affiliate import replica
        from affiliate.database import retrying
        from affiliate.extensions import db

        try:
            return retrying(db.session, super().dispatch_request)
        except Exception:
            if not replica.failed_over():
                raise
        return retrying(db.session, super().dispatch_request)


def create_app(config_class: type[Config] | None = None, overrides: dict | None = None) -> Flask:
    """Build the portal app: configuration, extensions, blueprints, errors, commands."""
    config_class = config_class or config_from_env()
    overrides = overrides or {}
    app = Portal(
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
    from affiliate import mail, replica
    from affiliate.auth.hashing import BackgroundHasher
    from affiliate.auth.sessions import init_login
    from affiliate.database import configure_engine
    from affiliate.extensions import csrf, db, migrate

    db.init_app(app)
    with app.app_context():
        for engine in db.engines.values():
            configure_engine(engine)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))
    replica.init_app(app)
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
    """Every blueprint, by package; docs/layout.md says how a blueprint's name, module, prefix and templates agree."""
    from affiliate.account import notifications as account_notifications
    from affiliate.account import routes as account
    from affiliate.account import two_factor as account_two_factor
    from affiliate.admin import affiliates as admin_affiliates
    from affiliate.admin import api_keys as admin_api_keys
    from affiliate.admin import conversions as admin_conversions
    from affiliate.admin import coupons as admin_coupons
    from affiliate.admin import enrollments as admin_enrollments
    from affiliate.admin import fraud_rules as admin_fraud_rules
    from affiliate.admin import groups as admin_groups
    from affiliate.admin import outbox as admin_outbox
    from affiliate.admin import people as admin_people
    from affiliate.admin import plans as admin_plans
    from affiliate.admin import programs as admin_programs
    from affiliate.admin import reports as admin_reports
    from affiliate.admin import routes as admin
    from affiliate.admin import webhooks as admin_webhooks
    from affiliate.api import management as api_management
    from affiliate.api import routes as api
    from affiliate.api import webhooks as api_webhooks
    from affiliate.auth import routes as auth
    from affiliate.finance import adjustments as finance_adjustments
    from affiliate.finance import audit as finance_audit
    from affiliate.finance import commissions as finance_commissions
    from affiliate.finance import payouts as finance_payouts
    from affiliate.finance import review as finance_review
    from affiliate.finance import routes as finance
    from affiliate.integrations import stripe as integrations_stripe
    from affiliate.main import routes as main
    from affiliate.member import routes as member
    from affiliate.partner import conversions as partner_conversions
    from affiliate.partner import coupons as partner_coupons
    from affiliate.partner import earnings as partner_earnings
    from affiliate.partner import links as partner_links
    from affiliate.partner import postbacks as partner_postbacks
    from affiliate.partner import reports as partner_reports
    from affiliate.partner import routes as partner

    modules = (
        *(main, auth, member, integrations_stripe),
        *(account, account_two_factor, account_notifications),
        *(partner, partner_links, partner_conversions, partner_earnings, partner_postbacks, partner_coupons),
        partner_reports,
        *(admin, admin_affiliates, admin_programs, admin_plans, admin_groups, admin_enrollments, admin_api_keys),
        *(admin_webhooks, admin_coupons, admin_outbox, admin_people, admin_fraud_rules, admin_conversions),
        admin_reports,
        *(finance, finance_review, finance_commissions, finance_payouts, finance_adjustments, finance_audit),
        *(api, api_management, api_webhooks),
    )
    for module in modules:
        app.register_blueprint(module.bp)
    account_two_factor.init_app(app)
    if app.config["DEMO_SHOP"]:
        from affiliate.demo_shop import routes as demo_shop

        app.register_blueprint(demo_shop.bp)


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
    from affiliate.formatting import FILTERS
    from affiliate.mail import external_url
    from affiliate.services.audit import status_word
    from affiliate.services.fraud import DESCRIPTIONS, action_label, rule_label, setting_label
    from affiliate.services.trace_words import matched_by, trace_time, verdict_action

    app.jinja_env.filters.update(FILTERS)
    # Words for what code names in snake_case: fraud rules, their actions and thresholds, and statuses.
    app.jinja_env.filters.update(
        rule_label=rule_label,
        rule_description=lambda rule: DESCRIPTIONS.get(rule, ""),
        rule_action=action_label,
        setting_label=setting_label,
        status_word=status_word,
        matched_by=matched_by,
        trace_time=trace_time,
        verdict_action=verdict_action,
    )
    app.jinja_env.globals["public_base_url"] = app.config["PUBLIC_BASE_URL"].rstrip("/")
    # Absolute links in pages are built on PUBLIC_BASE_URL, as in mail, never on the request's Host header.
    app.jinja_env.globals["external_url"] = external_url


def register_jobs(app: Flask) -> None:
    from affiliate import jobs

    jobs.init_app(app)


def register_commands(app: Flask) -> None:
    from affiliate.cli import commands

    for command in commands:
        app.cli.add_command(command)
