"""A shopper without a browser (plain HTTP with cookies), and the shop's credentials for a test program."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

from affiliate.demo_shop.credentials import ShopCredentials, credentials_path, save
from tests.api.helpers import make_merchant
from tests.redirector.helpers import CHROME


@dataclass
class Page:
    status: int
    url: str
    headers: Message  # case-insensitive, as HTTP header names are
    text: str

    def hidden(self, name: str) -> str:
        match = re.search(rf'name="{name}" type="hidden" value="([^"]*)"', self.text)
        assert match, f"no hidden {name} on the page"
        return match.group(1)

    @property
    def main(self) -> str:
        """The page's main content as plain text, for asserting what the shopper reads."""
        body = re.search(r"<main[^>]*>(.*)</main>", self.text, re.S)
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body.group(1) if body else self.text)).strip()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Shopper:
    """A desktop Chrome as far as the server can tell, keeping cookies; redirects are returned, not followed."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect)
        self.opener.addheaders = [("User-Agent", CHROME)]

    def get(self, path_or_url: str) -> Page:
        return self._open(urllib.request.Request(self._url(path_or_url)))  # noqa: S310 - loopback test server

    def post(self, path: str, fields: dict) -> Page:
        data = urllib.parse.urlencode(fields).encode()
        return self._open(urllib.request.Request(self._url(path), data=data))  # noqa: S310 - loopback test server

    def _url(self, path_or_url: str) -> str:
        return path_or_url if path_or_url.startswith("http") else self.base_url + path_or_url

    def _open(self, request: urllib.request.Request) -> Page:
        try:
            response = self.opener.open(request, timeout=30)
        except urllib.error.HTTPError as error:  # 3xx (not followed), 4xx and 5xx
            return Page(error.code, request.full_url, error.headers, error.read().decode())
        with response:
            return Page(response.status, response.url, response.headers, response.read().decode())


def click_id_of(location: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["ct_click"][0]


def give_shop_credentials(app, program, instance: Path, admin=None) -> ShopCredentials:
    """Issue the program an API key, and keep it in the instance folder as seed-demo does for the demo shop."""
    merchant = make_merchant(app, program, admin)
    credentials = ShopCredentials(program.id, program.currency, merchant.token, merchant.secret)
    save(credentials_path(instance), credentials)
    return credentials
