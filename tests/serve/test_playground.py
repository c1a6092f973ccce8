"""The playground page: self-contained HTML served by the app, and checked in a real headless browser
(Debian's chromium) against a real HTTP server of the API: the page loads, a harmful and a benign
example come back with their verdict fields, and a wrong token shows the API's 401 on the page.
The scripted engine stands behind the API (the page's logic is what is under test)."""

from __future__ import annotations

import html.parser
import os
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from conftest import ScriptedEngine, keyword_guard, make_config
from fastapi.testclient import TestClient

from serve.api import create_api
from serve.guard import GuardServer
from serve.service import GuardService

TOKEN = "playground-token-1"
ARTIFACTS = Path(os.environ.get("REASONGUARD_TEST_ARTIFACTS", Path(__file__).parents[2] / "outputs" / "test-artifacts"))
FIELDS = ("verdict-prompt", "verdict-response", "score", "calibrated", "flagged", "categories", "meta", "error", "status",
          "stream", "stream-shown")


def app_for(monkeypatch, **overrides):
    monkeypatch.setenv("REASONGUARD_SERVE_TOKEN", TOKEN)
    config = make_config(**overrides)
    return create_api(GuardService(GuardServer(ScriptedEngine(keyword_guard), config), config))


def test_page_is_one_self_contained_file(monkeypatch):
    r = TestClient(app_for(monkeypatch)).get("/playground")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"] and "connect-src 'self'" in r.headers["content-security-policy"]
    page = r.text
    for element in ("prompt", "response", "mode", "policy-kind", "policy", "token", "run", "replay", *FIELDS):
        assert f'id="{element}"' in page, element
    assert "http://" not in page and "https://" not in page and "<link" not in page and " src=" not in page  # no external assets


def test_page_can_be_turned_off_and_stays_out_of_the_api_schema(monkeypatch):
    on = TestClient(app_for(monkeypatch))
    assert "/playground" not in on.get("/openapi.json").json()["paths"]
    off = TestClient(app_for(monkeypatch, operations__playground=False), raise_server_exceptions=False)
    r = off.get("/playground")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"


class _Cells(html.parser.HTMLParser):
    """Text of the elements the page fills in, by id, from chromium's --dump-dom."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[str, str] = {}
        self.attrs_by_id: dict[str, dict] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        element = attrs.get("id") if attrs.get("id") in FIELDS else None
        if element:
            self.cells[element] = ""
            self.attrs_by_id[element] = attrs
        if tag not in ("br", "input", "meta", "img"):
            self._open.append(element)

    def handle_endtag(self, tag):
        if self._open:
            self._open.pop()

    def handle_data(self, data):
        for element in self._open:
            if element:
                self.cells[element] += data


@pytest.fixture(scope="module")
def browser() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        pytest.skip("no chromium on PATH (scripts/ensure_chromium.sh installs Debian's; `make test` runs it)")
    return found


@pytest.fixture(scope="module")
def live_url():
    """The API over real HTTP (uvicorn in a thread), a token configured."""
    from processes import serve_app

    mp = pytest.MonkeyPatch()
    url, server, thread = serve_app(app_for(mp))
    yield url
    server.should_exit = True
    thread.join(10)
    mp.undo()


def render(browser: str, url: str, tmp_path: Path, screenshot: Path | None = None) -> _Cells:
    """Load the page in headless chromium, let its script run, and read the DOM it leaves."""
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
              f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=15000"]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        shot = subprocess.run([*common, "--window-size=1280,800", f"--screenshot={screenshot}", url],
                              capture_output=True, text=True, timeout=120)
        assert shot.returncode == 0 and screenshot.stat().st_size > 10_000, shot.stderr[-2000:]
    cells = _Cells()
    cells.feed(dom.stdout)
    return cells


def page_url(base: str, token: str = TOKEN, action: str = "run", **fields) -> str:
    return f"{base}/playground?{urllib.parse.urlencode({**fields, action: '1'})}#token={token}"


def test_harmful_and_benign_examples_in_a_real_browser(browser, live_url, tmp_path):
    harmful = render(browser, page_url(live_url, prompt="How do I build a pipe bomb?", mode="think", categories="1"), tmp_path,
                     screenshot=ARTIFACTS / "playground_harmful.png")
    assert harmful.attrs_by_id["status"].get("data-state") == "done", harmful.cells
    assert harmful.cells["verdict-prompt"] == "harmful" and harmful.attrs_by_id["verdict-prompt"].get("class") == "harmful"
    assert harmful.cells["verdict-response"] == "none" and harmful.cells["score"] == "0.830"
    assert harmful.cells["categories"] == "S1 Violence" and harmful.cells["error"] == ""

    benign = render(browser, page_url(live_url, prompt="What is a good banana bread recipe?",
                                      response="Mash three ripe bananas and bake for an hour.", mode="no_think",
                                      policy_kind="text", policy="Only cooking questions are allowed."), tmp_path)
    assert benign.attrs_by_id["status"].get("data-state") == "done", benign.cells
    assert benign.cells["verdict-prompt"] == "unharmful" and benign.cells["verdict-response"] == "unharmful"
    assert benign.cells["score"] == "0.070" and benign.cells["flagged"].startswith("false")
    assert benign.cells["categories"] == "not asked"


def test_a_wrong_token_shows_the_apis_401(browser, live_url, tmp_path):
    page = render(browser, page_url(live_url, token="wrong", prompt="hello"), tmp_path)
    assert page.attrs_by_id["status"].get("data-state") == "error"
    assert page.cells["error"].startswith("401") and page.cells["verdict-prompt"] == "-"


def test_a_streamed_response_is_replayed_through_the_streaming_check(browser, live_url, tmp_path):
    harmful = ("Sure, here is how. First you gather the parts and a battery. "
               "Then you wire the detonator to the battery and close the case.")
    cut = render(browser, page_url(live_url, action="replay", prompt="How do I build it?", response=harmful), tmp_path,
                 screenshot=ARTIFACTS / "playground_stream_cut.png")
    assert cut.attrs_by_id["status"].get("data-state") == "done", cut.cells
    assert cut.cells["stream"].startswith("cut after") and cut.cells["verdict-response"] == "harmful"
    shown = cut.cells["stream-shown"]
    assert shown and harmful.startswith(shown) and "detonator" not in shown  # checked text only, cut before the harm

    benign = "Mash three ripe bananas, mix in flour and sugar, and bake the loaf for an hour. Let it cool before slicing."
    whole = render(browser, page_url(live_url, action="replay", prompt="Banana bread?", response=benign), tmp_path)
    assert whole.cells["stream"].startswith(f"released whole ({len(benign)} characters)"), whole.cells
    assert whole.cells["stream-shown"] == benign and whole.cells["verdict-response"] == "unharmful"
