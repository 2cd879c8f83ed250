"""WTForms validators built on Clicktrail's URL rules."""

from __future__ import annotations

import re

import ada_url
from flask import current_app
from wtforms.fields.choices import SelectChoice
from wtforms.validators import ValidationError

from affiliate.urls import InvalidUrl, parse_destination, parse_host_list


def web_url(form, field) -> None:
    """Accept only http(s) URLs, so a stored website can never become a javascript: link."""
    if not field.data:
        return
    try:
        url = ada_url.URL(field.data.strip())
    except ValueError:
        raise ValidationError("Enter a full URL such as https://example.com.") from None
    if url.protocol not in ("http:", "https:") or "." not in url.hostname:
        raise ValidationError("Enter a full URL such as https://example.com.")
    field.data = url.href


def https_destination(form, field) -> None:
    """An https destination (or loopback http, when ALLOW_HTTP_LOOPBACK_DESTINATIONS is on), normalised."""
    if not field.data:
        return
    try:
        loopback = current_app.config["ALLOW_HTTP_LOOPBACK_DESTINATIONS"]
        field.data = parse_destination(field.data, allow_http_loopback=loopback)
    except InvalidUrl as error:
        raise ValidationError(str(error)) from None


def host_list(form, field) -> None:
    try:
        field.data = "\n".join(parse_host_list(field.data or ""))
    except InvalidUrl as error:
        raise ValidationError(str(error)) from None


def options(pairs) -> list[SelectChoice]:
    """Turn (value, label) pairs into WTForms select choices."""
    return [SelectChoice(value, label) for value, label in pairs]


UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
UNSTORABLE_MESSAGE = "must not contain NUL bytes or unpaired surrogate characters"


def unstorable(text: str) -> bool:
    """Whether ``text`` holds a character no database column can keep: PostgreSQL refuses NUL in text, and a
    lone surrogate has no UTF-8 encoding at all."""
    return UNSTORABLE.search(text) is not None
