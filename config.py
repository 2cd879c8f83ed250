"""Configuration classes; every setting can come from the environment."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent
MAX_RETENTION_DAYS = 36_500  # a century: longer is "keep" (0), and dates that far back overflow


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"clicktrail: {name} must be a whole number, got {value!r}") from None


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def normalise_database_url(url: str | None) -> str | None:
    """Map the usual PostgreSQL URL spellings onto the psycopg 3 driver."""
    if url is None:
        return None
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Config:
    """Settings shared by every environment."""

    ENV_NAME = "base"
    SECRET_KEY = env_str("SECRET_KEY")
    SQLALCHEMY_DATABASE_URI = normalise_database_url(env_str("DATABASE_URL"))
    # Connections are kept for every server thread: a new SQLite connection starts with a cold page
    # cache and parses the schema again, which under load costs more than the queries themselves.
    SQLALCHEMY_ENGINE_OPTIONS: dict = {
        "pool_pre_ping": True,
        "pool_size": env_int("DATABASE_POOL_SIZE", 32),
        "max_overflow": env_int("DATABASE_POOL_OVERFLOW", 32),
    }
    # A PostgreSQL streaming replica for reports and their CSV exports (affiliate/replica.py), used while it
    # lags no more than REPLICA_MAX_LAG_SECONDS; its lag is looked at again every REPLICA_CHECK_SECONDS.
    DATABASE_REPLICA_URL = normalise_database_url(env_str("DATABASE_REPLICA_URL"))
    REPLICA_MAX_LAG_SECONDS = env_int("REPLICA_MAX_LAG_SECONDS", 10)
    REPLICA_CHECK_SECONDS = env_int("REPLICA_CHECK_SECONDS", 5)
    PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://127.0.0.1:8000")
    # Program destinations, fallbacks and deep links are https only. `make run` turns this on so the
    # demo program can send shoppers to the demo shop on http://127.0.0.1: it also allows plain http to
    # 127.0.0.1, [::1] and localhost, and nothing else. Never in production.
    ALLOW_HTTP_LOOPBACK_DESTINATIONS = env_bool("ALLOW_HTTP_LOOPBACK_DESTINATIONS", False)
    # Webhooks and postbacks (affiliate/outbound.py) may go to 127.0.0.0/8 and ::1: for the test suite's
    # receivers only, never private or metadata addresses, and production refuses to start with it.
    OUTBOUND_ALLOW_LOOPBACK = env_bool("OUTBOUND_ALLOW_LOOPBACK", False)
    # The demo merchant (affiliate/demo_shop): its pages, and how long its checkout waits for the
    # conversion API (which itself waits up to 5 s for a click issued moments before).
    DEMO_SHOP = env_bool("DEMO_SHOP", True)
    DEMO_SHOP_API_TIMEOUT_SECONDS = env_int("DEMO_SHOP_API_TIMEOUT_SECONDS", 10)
    # How many reverse proxies in front of us append to X-Forwarded-For; 0 trusts none.
    TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
    # None means the GeoLite2-City file shipped by the maxminddb-geolite2 package.
    GEOIP_DATABASE = env_str("GEOIP_DATABASE")

    MAX_CONTENT_LENGTH = env_int("MAX_CONTENT_LENGTH", 1024 * 1024)
    SESSION_COOKIE_NAME = "clicktrail_session"
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
    REMEMBER_COOKIE_NAME = "clicktrail_remember"
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_SECURE = SESSION_COOKIE_SECURE
    REMEMBER_COOKIE_DURATION = timedelta(days=env_int("REMEMBER_DAYS", 14))
    # A login without "remember me" lasts this long on the server even if the browser stays open.
    SESSION_HOURS = env_int("SESSION_HOURS", 12)
    WTF_CSRF_TIME_LIMIT = None  # the token lives as long as the session that holds it
    # Approving a payout batch needs the password entered this recently.
    FRESH_LOGIN_MINUTES = env_int("FRESH_LOGIN_MINUTES", 15)

    # Argon2id, RFC 9106 "second recommended option" (stronger than OWASP's 19 MiB, t=2 minimum).
    ARGON2_TIME_COST = env_int("ARGON2_TIME_COST", 3)
    ARGON2_MEMORY_KIB = env_int("ARGON2_MEMORY_KIB", 65536)
    ARGON2_PARALLELISM = env_int("ARGON2_PARALLELISM", 4)

    # Sign-in and account-creation throttles, counted in the database so they hold across workers.
    # Failures allowed before each further attempt waits, the first wait (doubling per failure) and the
    # longest; a key forgets after LOGIN_FORGET_HOURS without a failure (docs/sign-in.md).
    LOGIN_FREE_FAILURES_PER_ACCOUNT = env_int("LOGIN_FREE_FAILURES_PER_ACCOUNT", 5)  # one email from one address
    LOGIN_FREE_FAILURES_PER_IP = env_int("LOGIN_FREE_FAILURES_PER_IP", 30)  # one address, any email
    LOGIN_FIRST_DELAY_SECONDS = env_int("LOGIN_FIRST_DELAY_SECONDS", 30)
    LOGIN_LONGEST_DELAY_MINUTES = env_int("LOGIN_LONGEST_DELAY_MINUTES", 15)
    LOGIN_FORGET_HOURS = env_int("LOGIN_FORGET_HOURS", 24)
    SIGNUPS_FREE_PER_IP = env_int("SIGNUPS_FREE_PER_IP", 20)  # /apply and /signup together
    SIGNUP_FIRST_DELAY_SECONDS = env_int("SIGNUP_FIRST_DELAY_SECONDS", 60)
    SIGNUP_LONGEST_DELAY_MINUTES = env_int("SIGNUP_LONGEST_DELAY_MINUTES", 60)
    SIGNUP_FORGET_HOURS = env_int("SIGNUP_FORGET_HOURS", 1)
    PASSWORD_MIN_LENGTH = env_int("PASSWORD_MIN_LENGTH", 12)

    # Strict-Transport-Security for every answer of the portal and the redirector; empty sends none, since
    # a browser told this over plain http (development, tests) would refuse the site's http address for a year.
    HSTS = ""

    # The instance folder holds the SQLite database, the development key and the click spool.
    INSTANCE_PATH = env_str("CLICKTRAIL_INSTANCE", str(PROJECT_ROOT / "instance"))

    # Redirector (issue: click redirector).
    CLICK_PARAM = "ct_click"  # query parameter carrying the click id to the destination
    VISITOR_COOKIE_DAYS = env_int("VISITOR_COOKIE_DAYS", 730)
    UNIQUE_CLICK_WINDOW_SECONDS = env_int("UNIQUE_CLICK_WINDOW_SECONDS", 3600)
    LINK_CACHE_SECONDS = env_int("LINK_CACHE_SECONDS", 30)
    LINK_CACHE_PRELOAD = env_int("LINK_CACHE_PRELOAD", 100_000)
    # The click log: where every click is made durable before its redirect, until it is in the
    # database. Defaults to <instance>/clicklog; put it on local disk.
    CLICK_LOG_DIR = env_str("CLICK_LOG_DIR")
    CLICK_LOG_SEGMENT_MB = env_int("CLICK_LOG_SEGMENT_MB", 8)
    CLICK_BATCH_MAX = env_int("CLICK_BATCH_MAX", 256)
    CLICK_WAIT_SECONDS = env_int("CLICK_WAIT_SECONDS", 10)
    # "process": one ingester process per click log stores the clicks, off the request workers;
    # "thread": each redirector process stores its own, in a thread (tests, single-process tools).
    CLICK_INGESTER = env_str("CLICK_INGESTER", "process")
    # How much lower than its ingester a redirector worker (RSGI) runs on the CPUs (a nice value, 0-19): when the
    # machine is saturated, storing clicks comes before answering more of them, so the click log cannot grow
    # without bound. With CPU to spare it changes nothing.
    REDIRECTOR_NICE = env_int("REDIRECTOR_NICE", 19)
    # Seconds between background rounds of accruing conversions and approving commissions past their
    # hold (affiliate/jobs.py); 0 leaves them to `flask accrue-commissions` and `flask approve-due`.
    MONEY_JOBS_SECONDS = env_int("MONEY_JOBS_SECONDS", 30)
    # How long a program invitation link stays valid.
    INVITATION_DAYS = env_int("INVITATION_DAYS", 14)

    # Data retention (affiliate/services/retention.py), applied every RETENTION_JOBS_SECONDS by the
    # background jobs and by `flask purge-clicks`; 0 keeps forever. Rollups and clicks that conversions or
    # referrals point at are always kept. The defaults keep what attribution and fraud screening read
    # (docs/privacy.md): raw clicks and their IPs for the longest attribution window of any program and at
    # least the 30 days screening looks back; user agents only until the click is stored and parsed.
    CLICK_RETENTION_DAYS = env_int("CLICK_RETENTION_DAYS", 30)
    CLICK_IP_DAYS = env_int("CLICK_IP_DAYS", 30)
    CLICK_IP_MODE = env_str("CLICK_IP_MODE", "truncate")  # truncate (to the /24 or /48 network) or drop
    CLICK_USER_AGENT_DAYS = env_int("CLICK_USER_AGENT_DAYS", 1)
    CLICK_USER_AGENT_MODE = env_str("CLICK_USER_AGENT_MODE", "truncate")  # truncate (product token) or drop
    # Seconds between background retention rounds; 0 leaves retention to `flask purge-clicks`.
    RETENTION_JOBS_SECONDS = env_int("RETENTION_JOBS_SECONDS", 3600)
    # Bonuses and clawbacks larger than this wait for a second finance user (docs/money.md). Whole units of
    # the program's currency: "100" is 100.00 USD, 100 JPY or 100.000 KWD; currency codes after it set their
    # own, as "100,JPY=15000,KWD=30"; "0" sends every adjustment for approval. Read into
    # ADJUSTMENT_APPROVAL_THRESHOLDS ({"*": 100, "JPY": 15000, ...}).
    ADJUSTMENT_APPROVAL_THRESHOLD = env_str("ADJUSTMENT_APPROVAL_THRESHOLD", "100")

    # Mail (docs/mail.md). Every message waits in the outbox table until the background sender hands it
    # to this SMTP server; with no SMTP_HOST (the `make run` default) mail stays in the outbox, where the
    # admin's Outbox page shows it. SMTP_TLS: "starttls" (default), "ssl" (implicit TLS) or "none".
    SMTP_HOST = env_str("SMTP_HOST")
    SMTP_PORT = env_int("SMTP_PORT", 587)
    SMTP_USERNAME = env_str("SMTP_USERNAME")
    SMTP_PASSWORD = env_str("SMTP_PASSWORD")
    SMTP_TLS = env_str("SMTP_TLS", "starttls")
    SMTP_TIMEOUT_SECONDS = env_int("SMTP_TIMEOUT_SECONDS", 20)
    MAIL_FROM = env_str("MAIL_FROM", "Clicktrail <no-reply@clicktrail.example>")
    # How often each process's sender looks for mail that is due; 0 leaves sending to `flask send-mail`.
    MAIL_SENDER_SECONDS = env_int("MAIL_SENDER_SECONDS", 2)
    # A sender holds a message this long while sending it; one that dies mid-send frees it after this.
    MAIL_CLAIM_SECONDS = env_int("MAIL_CLAIM_SECONDS", 120)
    # After a failed send the next try waits MAIL_RETRY_FIRST_SECONDS, doubling each time up to the longest.
    MAIL_RETRY_FIRST_SECONDS = env_int("MAIL_RETRY_FIRST_SECONDS", 30)
    MAIL_RETRY_LONGEST_MINUTES = env_int("MAIL_RETRY_LONGEST_MINUTES", 60)
    # Delivered mail is deleted from the outbox after this many days (0 keeps it); mail not yet sent is never.
    MAIL_KEEP_DAYS = env_int("MAIL_KEEP_DAYS", 30)
    # Webhooks and postbacks (docs/webhooks.md): how often each process's sender looks for due deliveries (0 leaves
    # it to `flask send-webhooks`), and how long a claimed delivery is left to its sender.
    DELIVERY_SENDER_SECONDS = env_int("DELIVERY_SENDER_SECONDS", 2)
    DELIVERY_CLAIM_SECONDS = env_int("DELIVERY_CLAIM_SECONDS", 60)
    # Affiliates' trackers are often plain http; webhooks to merchants are https only, whatever this says.
    POSTBACK_ALLOW_HTTP = env_bool("POSTBACK_ALLOW_HTTP", False)
    # Links in mail: password reset and email verification stay valid this long.
    PASSWORD_RESET_MINUTES = env_int("PASSWORD_RESET_MINUTES", 60)
    EMAIL_VERIFICATION_DAYS = env_int("EMAIL_VERIFICATION_DAYS", 7)
    # Password reset requests: free ones per address (any email) and per email, before each waits.
    RESET_FREE_PER_IP = env_int("RESET_FREE_PER_IP", 10)
    RESET_FREE_PER_EMAIL = env_int("RESET_FREE_PER_EMAIL", 3)
    RESET_FIRST_DELAY_SECONDS = env_int("RESET_FIRST_DELAY_SECONDS", 60)
    RESET_LONGEST_DELAY_MINUTES = env_int("RESET_LONGEST_DELAY_MINUTES", 60)
    # Second-factor codes: failures allowed per account before each further try waits.
    SECOND_FACTOR_FREE_FAILURES = env_int("SECOND_FACTOR_FREE_FAILURES", 5)
    # How long after the password a half-finished sign-in may still give its second factor.
    SECOND_FACTOR_PENDING_MINUTES = env_int("SECOND_FACTOR_PENDING_MINUTES", 10)
    # Security keys (WebAuthn): the relying party id is the host of PUBLIC_BASE_URL unless set here.
    WEBAUTHN_RP_ID = env_str("WEBAUTHN_RP_ID")
    WEBAUTHN_RP_NAME = env_str("WEBAUTHN_RP_NAME", "Clicktrail")

    @classmethod
    def init_app(cls, app) -> None:
        """Fill in settings that depend on the app's instance folder."""
        cls.resolve(app.config)

    @classmethod
    def resolve(cls, config: dict) -> None:
        """Fill in settings derived from others (used by the portal and the redirector alike)."""
        instance = Path(config["INSTANCE_PATH"])
        instance.mkdir(parents=True, exist_ok=True)
        if not config.get("SQLALCHEMY_DATABASE_URI"):
            config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{instance / 'clicktrail.db'}"
        if not config.get("CLICK_LOG_DIR"):
            config["CLICK_LOG_DIR"] = str(instance / "clicklog")
        ingester = config.get("CLICK_INGESTER")
        if ingester not in ("process", "thread"):
            raise SystemExit(f"clicktrail: CLICK_INGESTER must be process or thread, got {ingester!r}")
        if not 0 <= int(config.get("REDIRECTOR_NICE", 0)) <= 19:
            raise SystemExit(f"clicktrail: REDIRECTOR_NICE must be 0 to 19, got {config.get('REDIRECTOR_NICE')!r}")
        for name in ("CLICK_IP_MODE", "CLICK_USER_AGENT_MODE"):
            if config.get(name, "truncate") not in ("truncate", "drop"):
                raise SystemExit(f"clicktrail: {name} must be truncate or drop, got {config.get(name)!r}")
        if config.get("DEMO_SHOP_API_TIMEOUT_SECONDS", 10) < 1:
            raise SystemExit("clicktrail: DEMO_SHOP_API_TIMEOUT_SECONDS must be at least 1")
        for name in ("CLICK_RETENTION_DAYS", "CLICK_IP_DAYS", "CLICK_USER_AGENT_DAYS"):
            if not 0 <= config.get(name, 0) <= MAX_RETENTION_DAYS:
                raise SystemExit(
                    f"clicktrail: {name} must be 0 (keep) or a number of days up to {MAX_RETENTION_DAYS}, "
                    f"got {config.get(name)}"
                )
        if config.get("SMTP_TLS", "starttls") not in ("starttls", "ssl", "none"):
            raise SystemExit(f"clicktrail: SMTP_TLS must be starttls, ssl or none, got {config.get('SMTP_TLS')!r}")
        config["ADJUSTMENT_APPROVAL_THRESHOLDS"] = adjustment_thresholds(
            str(config.get("ADJUSTMENT_APPROVAL_THRESHOLD", "100"))
        )

    @classmethod
    def as_dict(cls) -> dict:
        """The settings of this class as a plain dict, resolved (for the redirector, which has no Flask)."""
        config = {name: getattr(cls, name) for name in dir(cls) if name.isupper()}
        cls.resolve(config)
        return config


class DevelopmentConfig(Config):
    """Local development: SQLite in the instance folder, a secret key kept beside it."""

    ENV_NAME = "development"

    @classmethod
    def resolve(cls, config: dict) -> None:
        super().resolve(config)
        if not config.get("SECRET_KEY"):
            config["SECRET_KEY"] = instance_secret_key(Path(config["INSTANCE_PATH"]))


class TestingConfig(Config):
    """The test suite: real database given by the fixtures, cheap password hashing."""

    ENV_NAME = "testing"
    TESTING = True
    SECRET_KEY = "testing-secret-key-not-for-production"  # noqa: S105 - tests only
    SQLALCHEMY_DATABASE_URI = None
    DATABASE_REPLICA_URL = None  # the replica tests set their own
    CLICK_INGESTER = "thread"  # tests store clicks when they choose (recorder.flush); some test process mode
    REDIRECTOR_NICE = 0  # tests start workers in their own process; the test runner keeps its priority
    MONEY_JOBS_SECONDS = 0  # tests accrue and approve when they choose
    RETENTION_JOBS_SECONDS = 0  # tests purge when they choose
    MAIL_SENDER_SECONDS = 0  # tests send the outbox when they choose
    DELIVERY_SENDER_SECONDS = 0  # and deliver webhooks when they choose
    ARGON2_TIME_COST = 1
    ARGON2_MEMORY_KIB = 8192
    ARGON2_PARALLELISM = 1
    OUTBOUND_ALLOW_LOOPBACK = True  # webhook receivers in tests listen on 127.0.0.1


class ProductionConfig(Config):
    """Production: secrets and database must come from the environment."""

    ENV_NAME = "production"
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    REMEMBER_COOKIE_SECURE = SESSION_COOKIE_SECURE
    HSTS = "max-age=31536000; includeSubDomains"
    DEMO_SHOP = env_bool("DEMO_SHOP", False)

    @classmethod
    def resolve(cls, config: dict) -> None:
        if config.get("ALLOW_HTTP_LOOPBACK_DESTINATIONS"):
            raise SystemExit("clicktrail: ALLOW_HTTP_LOOPBACK_DESTINATIONS is for a local demo, never production")
        if config.get("OUTBOUND_ALLOW_LOOPBACK"):
            raise SystemExit("clicktrail: OUTBOUND_ALLOW_LOOPBACK is for tests, never production")
        if not config.get("SECRET_KEY"):
            raise SystemExit("clicktrail: production needs SECRET_KEY set in the environment")
        if not config.get("SQLALCHEMY_DATABASE_URI"):
            raise SystemExit("clicktrail: production needs DATABASE_URL set in the environment")
        super().resolve(config)


CONFIGS: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def adjustment_thresholds(text: str) -> dict[str, int]:
    """ADJUSTMENT_APPROVAL_THRESHOLD ("100" or "100,JPY=15000") as whole units per currency, "*" for the rest."""
    default, *overrides = [part.strip() for part in text.split(",")]
    thresholds: dict[str, int] = {}
    for code, amount in [("*", default), *(part.partition("=")[::2] for part in overrides)]:
        code, amount = code.strip().upper(), amount.strip()
        if not (amount.isascii() and amount.isdigit() and len(amount) <= 12) or not (
            code == "*" or (code.isascii() and code.isalpha() and len(code) == 3)
        ):
            raise SystemExit(
                "clicktrail: ADJUSTMENT_APPROVAL_THRESHOLD is a whole amount, then optional CODE=amount pairs, "
                f"as 100,JPY=15000; got {text!r}"
            )
        thresholds[code] = int(amount)
    return thresholds


def config_from_env() -> type[Config]:
    """Pick the configuration class named by CLICKTRAIL_ENV (default: development)."""
    name = env_str("CLICKTRAIL_ENV", "development")
    try:
        return CONFIGS[name]
    except KeyError:
        choices = ", ".join(CONFIGS)
        raise SystemExit(f"clicktrail: CLICKTRAIL_ENV must be one of {choices}, got {name!r}") from None


def instance_secret_key(instance: Path) -> str:
    """Return the development secret key kept in the instance folder, creating it once."""
    path = instance / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_hex(32)
    # O_EXCL so two workers starting at once agree on one key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key
