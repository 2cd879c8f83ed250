"""The demo shop's back end reporting a sale as any merchant's server would: signed JSON over HTTP.

Nothing here reaches into Clicktrail: the body is built, signed (HMAC-SHA256 over
``request-id.timestamp.body``, as the README's curl example does) and posted to
``/api/v1/conversions`` at the public address, with the standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from affiliate.demo_shop.credentials import ShopCredentials

CONVERSIONS_PATH = "/api/v1/conversions"
MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Sale:
    """One checkout, as the shop reports it."""

    order_id: str
    product: str
    amount_cents: int
    currency: str
    customer_email: str
    customer_external_id: str
    click_id: str | None
    visitor_id: str | None
    coupon: str | None = None


@dataclass(frozen=True)
class StoredSale:
    """The conversion API's answer to a sale it stored (or had stored before: ``replayed``)."""

    conversion: dict
    replayed: bool

    @property
    def attribution(self) -> dict:
        return self.conversion.get("attribution") or {}


class ReportFailed(Exception):
    """The sale was not recorded: the API was unreachable, too slow, or refused it.

    ``status`` is what the shop's page answers with: 409 for an order already placed with another
    basket, 504 when the API did not answer in time, 502 for anything else the API did.
    """

    def __init__(self, message: str, *, status: int, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


def sale_body(sale: Sale) -> bytes:
    """The JSON the conversion API takes for a sale (amount in minor units, the program's currency)."""
    body: dict = {
        "type": "sale",
        "order_id": sale.order_id,
        "amount": sale.amount_cents,
        "currency": sale.currency,
        "customer": {"external_id": sale.customer_external_id, "email": sale.customer_email},
        "metadata": {"product": sale.product, "shop": "Clicktrail demo shop"},
    }
    if sale.click_id:
        body["click_id"] = sale.click_id
    if sale.visitor_id:
        body["visitor_id"] = sale.visitor_id
    if sale.coupon:
        body["coupon"] = sale.coupon
    return json.dumps(body, separators=(",", ":")).encode()


def signature(secret: str, request_id: str, timestamp: int, body: bytes) -> str:
    """The ``Clicktrail-Signature`` value: v1= and the HMAC-SHA256 of ``request_id.timestamp.body``."""
    digest = hmac.new(secret.encode(), f"{request_id}.{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def report_sale(
    base_url: str, credentials: ShopCredentials, sale: Sale, *, timestamp: int, timeout: float
) -> StoredSale:
    """POST the signed sale to the conversion API at ``base_url``; return its answer or raise ReportFailed.

    Sending the same order again is safe: the API answers with the conversion it stored the first
    time (``Idempotent-Replayed``), so a shopper who submits twice is not counted twice.
    """
    url = urlsplit(base_url.rstrip("/") + CONVERSIONS_PATH)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ReportFailed(f"PUBLIC_BASE_URL ({base_url}) is not an http or https address.", status=502)
    body = sale_body(sale)
    request_id = f"shop.{sale.order_id}.{secrets.token_hex(4)}"
    headers = {
        "Authorization": f"Bearer {credentials.api_key}",
        "Content-Type": "application/json",
        "Clicktrail-Request-Id": request_id,
        "Clicktrail-Timestamp": str(timestamp),
        "Clicktrail-Signature": signature(credentials.signing_secret, request_id, timestamp, body),
    }
    connection_class = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    where = f"{url.scheme}://{url.netloc}"
    try:
        connection = connection_class(url.hostname, url.port, timeout=timeout)
        try:
            connection.request("POST", url.path, body=body, headers=headers)
            response = connection.getresponse()
            raw = response.read(MAX_ANSWER_BYTES)
        finally:
            connection.close()
    except TimeoutError:
        raise ReportFailed(f"The conversion API at {where} did not answer within {timeout:g} s.", status=504) from None
    except (OSError, http.client.HTTPException, ValueError) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise ReportFailed(f"The conversion API at {where} could not be reached: {reason}.", status=502) from None
    return _stored_sale(response.status, response.getheader("Idempotent-Replayed") == "true", raw)


def _stored_sale(status: int, replayed: bool, raw: bytes) -> StoredSale:
    try:
        document = json.loads(raw)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise ReportFailed(f"The conversion API answered HTTP {status} without its JSON body.", status=502)
    if status == 201 and isinstance(document.get("conversion"), dict):
        return StoredSale(document["conversion"], replayed)
    error = document.get("error") if isinstance(document.get("error"), dict) else {}
    code = str(error.get("code") or "unknown")
    message = str(error.get("message") or f"HTTP {status}")
    # 409 is the shopper's own doing (the same order with another basket); anything else is the shop's problem.
    page_status = 409 if status == 409 else 502
    raise ReportFailed(
        f"The conversion API refused the sale (HTTP {status}, {code}): {message}", status=page_status, code=code
    )
