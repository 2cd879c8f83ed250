"""Blurring old IP addresses and user agents, and the retention settings' validation."""

from __future__ import annotations

import re

import pytest

from affiliate.services.retention import blur_ip, blur_user_agent
from config import TestingConfig


@pytest.mark.parametrize(
    ("ip", "truncated"),
    [
        ("81.2.69.160", "81.2.69.0"),
        ("81.2.69.0", "81.2.69.0"),  # already truncated: unchanged, so a second run changes nothing
        ("2001:db8:1234:5678::1", "2001:db8:1234::"),
        ("::ffff:81.2.69.160", "::"),  # an IPv4-mapped IPv6 address is cut as IPv6 (/48)
        ("not an ip", None),
    ],
)
def test_blur_ip(ip, truncated):
    assert blur_ip(ip, "truncate") == truncated
    assert blur_ip(ip, "drop") is None


@pytest.mark.parametrize(
    ("agent", "truncated"),
    [
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15", "Mozilla/5.0"),
        ("curl/8.5.0", "curl/8.5.0"),
        ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", "facebookexternalhit/1.1"),
        ("Mozilla/5.0", "Mozilla/5.0"),
        ("(compatible)", None),
        ("x" * 300, "x" * 64),
    ],
)
def test_blur_user_agent(agent, truncated):
    assert blur_user_agent(agent, "truncate") == truncated
    assert blur_user_agent(agent, "drop") is None


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("CLICK_IP_MODE", "hash", "CLICK_IP_MODE must be truncate or drop"),
        ("CLICK_USER_AGENT_MODE", "", "CLICK_USER_AGENT_MODE must be truncate or drop"),
        ("CLICK_RETENTION_DAYS", -1, "CLICK_RETENTION_DAYS must be 0 (keep) or a number of days"),
    ],
)
def test_retention_settings_are_checked_at_start(tmp_path, setting, value, message):
    config = {**TestingConfig.as_dict(), "INSTANCE_PATH": str(tmp_path), setting: value}
    with pytest.raises(SystemExit, match=re.escape(message)):
        TestingConfig.resolve(config)
