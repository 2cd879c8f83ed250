"""Page titles are plain text: a name with markup shows as that text, and no page runs a script it did not ship."""

from __future__ import annotations

from html.parser import HTMLParser

from tests.factories import Auth, make_admin, make_affiliate, make_program, make_user

HOSTILE = '<script>alert("x")</script>'


class Page(HTMLParser):
    """The title's text and every script element of a page, as a browser's parser sees them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.scripts: list[tuple[str | None, str]] = []
        self._in: str | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self._in = "title"
        elif tag == "script":
            self._in = "script"
            self.scripts.append((dict(attrs).get("src"), ""))

    def handle_endtag(self, tag):
        if tag in ("title", "script"):
            self._in = None

    def handle_data(self, data):
        if self._in == "title":
            self.title += data
        elif self._in == "script":
            src, body = self.scripts[-1]
            self.scripts[-1] = (src, body + data)


def _assert_no_injected_script(page: Page) -> None:
    for src, body in page.scripts:
        assert src and src.startswith("/static/"), src
        assert body.strip() == "", body


def test_member_page_title_is_just_its_name(app, client):
    member = make_user(app, role="member", name=HOSTILE)
    Auth(client).login(member.email)
    html = client.get("/member/").get_data(as_text=True)
    page = Page(html)
    assert page.title == "Invite friends · Clicktrail"
    _assert_no_injected_script(page)
    assert "Hi " + HOSTILE.replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;") in html


def test_names_with_markup_show_as_text_in_titles(app, client):
    admin = make_admin(app)
    affiliate = make_affiliate(app, name=HOSTILE)
    program = make_program(app, admin, name=HOSTILE)
    Auth(client).login(admin.email)
    for url in (
        f"/admin/affiliates/{affiliate.id}",
        f"/admin/programs/{program.id}/edit",
        f"/admin/programs/{program.id}/fraud/",
        f"/admin/reports/affiliates/{affiliate.id}",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        page = Page(response.get_data(as_text=True))
        assert HOSTILE in page.title, (url, page.title)
        _assert_no_injected_script(page)
