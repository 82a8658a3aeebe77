"""The UI's files and how eoshare serves them (no browser needed).

* the six translations have the same keys and placeholders, every key the page and the
  scripts use exists, and no UI text is written anywhere but in the translations;
* the UI is self-contained: no address outside the node, vendored libraries exactly as
  ``web/package-lock.json`` pins them;
* ``/`` gives browsers the UI and STAC clients the landing page; ``/ui/`` serves the
  files safely (no way out of the folder, revalidation with ETags).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from eoshare import web
from eoshare.api.app import create_app
from eoshare.settings import Settings

REPO = Path(__file__).resolve().parents[2]
STATIC = web.STATIC
JS = sorted((STATIC / "js").glob("*.js"))
OWN_FILES = [STATIC / "index.html", STATIC / "css" / "app.css", *JS]
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


def _strings(lang: str) -> dict[str, str]:
    data: dict[str, str] = json.loads((STATIC / "i18n" / f"{lang}.json").read_text("utf-8"))
    return data


def _used_keys() -> set[str]:
    html = (STATIC / "index.html").read_text("utf-8")
    keys = set(re.findall(r'data-i18n="([^"]+)"', html))
    for spec in re.findall(r'data-i18n-attr="([^"]+)"', html):
        keys |= {pair.split(":", 1)[1] for pair in spec.split(";")}
    for path in JS:
        keys |= set(re.findall(r'\bt\(\s*"([^"]+)"', path.read_text("utf-8")))
    return keys | {"app.noscript"}  # filled in by the server (eoshare.web.index_html)


@pytest.mark.parametrize("lang", web.LANGUAGES)
def test_translations_have_the_same_keys_and_placeholders(lang: str) -> None:
    english = _strings("en")
    other = _strings(lang)
    assert set(other) == set(english)
    for key, text in english.items():
        assert sorted(re.findall(r"\{(\w+)\}", other[key])) == sorted(
            re.findall(r"\{(\w+)\}", text)
        ), (lang, key)
        assert other[key].strip(), (lang, key)


def test_the_six_un_languages() -> None:
    assert set(web.LANGUAGES) == {"ar", "zh", "en", "fr", "ru", "es"}
    assert {p.stem for p in (STATIC / "i18n").glob("*.json")} == set(web.LANGUAGES)
    assert frozenset({"ar"}) == web.RTL_LANGUAGES


def test_every_key_used_exists_and_every_key_is_used() -> None:
    used = _used_keys()
    english = set(_strings("en"))
    assert used - english == set(), "keys used but not translated"
    assert english - used == set(), "translated keys nobody uses"


class _TextFinder(HTMLParser):
    """Collects text written in the page itself, outside the translation keys."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, bool]] = []
        self.loose: list[str] = []
        self.filled: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("meta", "link", "input", "img", "br", "base"):
            return
        self.stack.append((tag, any(name == "data-i18n" for name, _ in attrs)))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        text = data.strip()
        if not text or not self.stack:
            return
        tag, keyed = self.stack[-1]
        if tag == "title" or text == "__NOSCRIPT__":
            return
        (self.filled if keyed else self.loose).append(text)


def test_no_ui_text_outside_the_translations() -> None:
    finder = _TextFinder()
    finder.feed((STATIC / "index.html").read_text("utf-8"))
    assert finder.loose == []
    assert finder.filled == [], "elements with data-i18n are filled by the script"
    for path in JS:
        source = path.read_text("utf-8")
        # text shown to people goes through t(); el(..., {text: "..."}) would bypass it
        assert not re.search(r"\btext:\s*[\"'`][^\"'`]", source), path.name
        assert not re.search(r"textContent\s*=\s*[\"'`][^\"'`]", source), path.name


def test_the_ui_is_self_contained() -> None:
    for path in OWN_FILES:
        text = path.read_text("utf-8")
        assert not re.search(r"(?:src|href)=\"(?:https?:)?//", text), path.name
        assert not re.search(r"url\((?:['\"])?(?:https?:)?//", text), path.name
        assert not re.search(r"import[^;]+from\s+[\"']https?:", text), path.name
        assert not re.search(r"fetch\(\s*[\"'`]https?:", text), path.name
    # nothing inline: the Content-Security-Policy forbids inline script and style
    html = (STATIC / "index.html").read_text("utf-8")
    assert "<style" not in html and " style=" not in html
    assert all(
        'src="' in tag or 'type="module" src="' in tag for tag in re.findall(r"<script[^>]*>", html)
    )


def test_vendored_libraries_match_the_lock() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_web.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    stamp = json.loads((STATIC / "vendor" / "VENDORED.json").read_text())
    lock = json.loads((REPO / "web" / "package-lock.json").read_text())
    for name, pinned in stamp["packages"].items():
        assert lock["packages"][f"node_modules/{name}"]["version"] == pinned["version"]
    html = (STATIC / "index.html").read_text("utf-8")
    for ref in re.findall(r'(?:src|href)="(vendor/[^"]+)"', html):
        assert (STATIC / ref).is_file(), ref


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        (None, "en"),
        ("ar", "ar"),
        ("fr-CA,fr;q=0.9,en;q=0.5", "fr"),
        ("de-DE,ru;q=0.8,zh;q=0.9", "zh"),
        ("es;q=0,en", "en"),
        ("pt-BR", "en"),
        ("zh-Hans-CN", "zh"),
        ("ru;q=bad,es;q=0.5", "es"),
    ],
)
def test_language_negotiation(header: str | None, lang: str) -> None:
    assert web.negotiate_language(header) == lang


# --- serving ----------------------------------------------------------------------------
@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(data_dir=tmp_path))) as c:
        yield c


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (BROWSER_ACCEPT, True),
        ("text/html", True),
        ("application/xhtml+xml", True),
        ("application/json", False),
        ("application/json, text/html;q=0.5", False),
        ("text/html;q=0.5, application/json", False),
        ("text/html, application/json", False),
        ("*/*", False),
        ("", False),
        (None, False),
        ("text/html;q=0", False),
        ("text/html;q=oops, */*", False),
    ],
)
def test_landing_page_negotiation(client: TestClient, accept: str | None, html: bool) -> None:
    headers = {} if accept is None else {"Accept": accept}
    response = client.get("/", headers=headers)
    assert response.status_code == 200
    assert "Accept" in response.headers["vary"]
    if html:
        assert response.headers["content-type"].startswith("text/html")
        assert '<base href="/ui/">' in response.text
        assert 'src="js/app.js"' in response.text
    else:
        assert response.headers["content-type"] == "application/json"
        assert response.json()["type"] == "Catalog"


def test_ui_page(client: TestClient) -> None:
    response = client.get("/ui/", headers={"Accept-Language": "ar-EG,ar;q=0.9"})
    assert response.status_code == 200
    assert '<html lang="ar" dir="rtl">' in response.text
    assert _strings("ar")["app.noscript"] in response.text
    assert "__" not in response.text.replace("__NOSCRIPT__", "")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    english = client.get("/ui/index.html")
    assert '<html lang="en" dir="ltr">' in english.text
    redirect = client.get("/ui", follow_redirects=False)
    assert redirect.status_code == 308 and redirect.headers["location"] == "/ui/"


def test_ui_page_behind_a_path_prefix(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    settings.api.base_url = "https://eo.example.org/node-ke/"
    with TestClient(create_app(settings)) as c:
        response = c.get("/", headers={"Accept": BROWSER_ACCEPT})
    assert '<base href="/node-ke/ui/">' in response.text


@pytest.mark.parametrize(
    ("path", "media"),
    [
        ("/ui/js/app.js", "text/javascript"),
        ("/ui/css/app.css", "text/css"),
        ("/ui/i18n/zh.json", "application/json"),
        ("/ui/vendor/leaflet/leaflet.js", "text/javascript"),
        ("/ui/vendor/leaflet/images/layers.png", "image/png"),
        ("/ui/img/favicon.svg", "image/svg+xml"),
    ],
)
def test_static_files(client: TestClient, path: str, media: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media)
    assert response.headers["cache-control"] == "no-cache"
    etag = response.headers["etag"]
    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""


@pytest.mark.parametrize(
    "path",
    [
        "/ui/nope.js",
        "/ui/js",
        "/ui/js/",
        "/ui/%2e%2e/__init__.py",
        "/ui/..%2f__init__.py",
        "/ui/js/%2e%2e/%2e%2e/__init__.py",
        "/ui/.hidden",
        "/ui/js/..%5capp.js",
        "/ui/%00",
    ],
)
def test_static_files_cannot_escape(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_ui_routes_stay_out_of_the_api_document(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    paths = app.openapi()["paths"]
    assert "/" in paths
    assert not [p for p in paths if p.startswith("/ui")]


def test_text_files_are_sent_compressed_once(client: TestClient) -> None:
    path = "/ui/vendor/leaflet/leaflet.js"
    original = (STATIC / "vendor" / "leaflet" / "leaflet.js").read_bytes()
    with client.stream("GET", path, headers={"Accept-Encoding": "gzip"}) as packed:
        packed.read()
        assert packed.headers["content-encoding"] == "gzip"
        assert packed.headers["vary"] == "Accept-Encoding"
        assert packed.num_bytes_downloaded < len(original) / 2
        assert packed.content == original  # decoded by the client
        gz_tag = packed.headers["etag"]
    plain = client.get(path, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.content == original
    assert plain.headers["etag"] != gz_tag
    # "gzip;q=0" refuses gzip: this handler sends the identity representation (the
    # app-wide GZip middleware, which ignores q, may still compress it on the way out)
    refused = client.get(path, headers={"Accept-Encoding": "gzip;q=0"})
    assert refused.headers["etag"] == plain.headers["etag"]
    again = client.get(path, headers={"Accept-Encoding": "gzip", "If-None-Match": gz_tag})
    assert again.status_code == 304
    # images are never recompressed
    png = client.get("/ui/vendor/leaflet/images/layers.png", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in png.headers
