"""Browser test of the rendered report: Debian's chromium, headless, driven through the Chrome
DevTools Protocol (websocket-client). Checks that index.html and the SVGs load without script
errors, that a screenshot is not blank, that clicking a frame zooms it and that search reports
a matched share. Skipped only when no chromium binary is installed."""
import base64
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
import urllib.request
import zlib

import pytest

from render_helpers import GOLDEN, RENDER_MAIN, ROOT, SOURCES, build_render_main, render  # noqa: F401

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")


class Browser:
    def __init__(self):
        import websocket  # PyPI websocket-client
        self.profile = tempfile.mkdtemp(prefix="fil-chromium-")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-port=0", f"--user-data-dir={self.profile}", "--window-size=1200,900",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port = None
        deadline = time.time() + 30
        while time.time() < deadline and port is None:
            line = self.proc.stderr.readline().decode(errors="replace")
            m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if m:
                port = int(m.group(1))
            elif not line and self.proc.poll() is not None:
                break
        assert port, "chromium did not report a DevTools port"
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
        self.next_id = 0
        self.events = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                assert "error" not in msg, msg
                return msg["result"]
            self.events.append(msg)

    def load(self, url):
        self.events.clear()
        self.call("Page.navigate", url=url)
        deadline = time.time() + 30
        while time.time() < deadline:
            if any(e.get("method") == "Page.loadEventFired" for e in self.events):
                break
            self.events.append(json.loads(self.ws.recv()))
        time.sleep(0.3)
        self.call("Runtime.evaluate", expression="1")   # drain pending events

    def errors(self):
        errs = [e for e in self.events if e.get("method") == "Runtime.exceptionThrown"]
        errs += [e for e in self.events if e.get("method") == "Log.entryAdded"
                 and e["params"]["entry"]["level"] == "error"
                 and "favicon" not in e["params"]["entry"].get("url", "")]
        return errs

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        assert "exceptionDetails" not in r, r
        return r["result"].get("value")

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            shutil.rmtree(self.profile, ignore_errors=True)


def png_colours(data):
    """Distinct pixel values of an 8-bit RGB/RGBA PNG (enough for Chromium's screenshots)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    colours = set()
    for row in range(height):
        f = raw[row * (stride + 1)]
        line = bytearray(raw[row * (stride + 1) + 1:(row + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        if row % 7 == 0:
            colours.update(bytes(line[i:i + bpp]) for i in range(0, stride, bpp * 5))
        prev = line
    return colours


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    build_render_main()
    out = tmp_path_factory.mktemp("browser")
    render("hostile.prof", str(out), "peak", "python job.py '<&>'", cwd=GOLDEN)
    (out / "basic").mkdir()
    render("basic.prof", str(out / "basic"), "peak", "python job.py", cwd=GOLDEN)
    return out


@pytest.fixture(scope="module")
def browser():
    b = Browser()
    yield b
    b.close()


def test_index_renders_without_errors_and_is_not_blank(browser, report):
    browser.load((report / "index.html").as_uri())
    assert browser.errors() == []
    assert browser.eval("document.querySelectorAll('object.graph').length") == 2
    assert browser.eval("!!document.querySelector('script')") is False
    png = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    assert len(png_colours(png)) > 10, "screenshot looks blank"


def test_hostile_svg_runs_only_its_own_script(browser, report):
    browser.load((report / "peak-memory.svg").as_uri())
    assert browser.errors() == []
    # If the hostile names had escaped their attributes, alert/extra scripts would exist.
    assert browser.eval("document.getElementsByTagName('script').length") == 1
    assert browser.eval("document.querySelectorAll('g.f').length") >= 4


def test_click_zooms_and_search_matches(browser, report):
    browser.load((report / "basic" / "peak-memory.svg").as_uri())
    assert browser.errors() == []
    # Pick the make_list frame (narrow) and click in its middle.
    rect = browser.eval("""(function () {
        var g = Array.from(document.querySelectorAll('g.f')).find(function (g) {
            return g.getAttribute('data-fn') === 'make_list'; });
        var r = g.querySelector('rect').getBoundingClientRect();
        return {x: r.x + r.width / 2, y: r.y + r.height / 2, w: r.width};
    })()""")
    assert rect["w"] < 100
    for kind in ("mousePressed", "mouseReleased"):
        browser.call("Input.dispatchMouseEvent", type=kind, x=rect["x"], y=rect["y"], button="left", clickCount=1)
    zoomed = browser.eval("""(function () {
        var g = Array.from(document.querySelectorAll('g.f')).find(function (g) {
            return g.getAttribute('data-fn') === 'make_list'; });
        var load = Array.from(document.querySelectorAll('g.f')).find(function (g) {
            return g.getAttribute('data-fn') === 'load'; });
        return {w: Number(g.querySelector('rect').getAttribute('width')),
                label: g.querySelector('text').textContent,
                loadHidden: load.style.display === 'none',
                reset: document.getElementById('reset').style.display};
    })()""")
    assert zoomed["w"] > 1000 and "make_list" in zoomed["label"]
    assert zoomed["loadHidden"] and zoomed["reset"] == ""
    details = browser.eval("document.getElementById('details').textContent")
    assert "make_list" in details and "%" in details
    browser.eval("document.getElementById('reset').dispatchEvent(new MouseEvent('click'))")
    assert browser.eval("document.querySelector('g.f[data-fn=\"load\"]').style.display") == ""
    share = browser.eval("filSearch('np.ones')")
    assert 0.98 < share < 1.0
    assert browser.eval("document.getElementById('matched').textContent").startswith("Matched: 98.9")
    assert browser.errors() == []
