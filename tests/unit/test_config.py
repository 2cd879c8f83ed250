"""Configuration: production refuses to start without secrets; development keeps its own key."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import instance_secret_key, normalise_database_url

ROOT = Path(__file__).resolve().parents[2]


def _start(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DATABASE_URL")}
    return subprocess.run(
        [sys.executable, "-c", "import wsgi; wsgi.app"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({}, "production needs SECRET_KEY"),
        ({"SECRET_KEY": "x" * 40}, "production needs DATABASE_URL"),
    ],
)
def test_production_refuses_to_start_without_settings(env, reason):
    result = _start({"CLICKTRAIL_ENV": "production", **env})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == f"clicktrail: {reason} set in the environment"


def test_unknown_environment_name_is_refused():
    result = _start({"CLICKTRAIL_ENV": "staging"})
    assert result.returncode != 0 and "CLICKTRAIL_ENV must be one of" in result.stderr


def test_development_secret_key_is_created_once_and_kept(tmp_path):
    first = instance_secret_key(tmp_path)
    assert len(first) == 64
    assert instance_secret_key(tmp_path) == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_database_urls_use_psycopg3():
    assert normalise_database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_database_url("sqlite:///x.db") == "sqlite:///x.db"
    assert normalise_database_url(None) is None


def test_production_refuses_http_loopback_destinations():
    env = {"CLICKTRAIL_ENV": "production", "SECRET_KEY": "x" * 40, "DATABASE_URL": "sqlite:////nonexistent/x.db"}
    result = _start({**env, "ALLOW_HTTP_LOOPBACK_DESTINATIONS": "1"})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "clicktrail: ALLOW_HTTP_LOOPBACK_DESTINATIONS is for a local demo, never production"
    )
