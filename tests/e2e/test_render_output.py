"""End-to-end tests of the report renderer (src/render_*.c) through tests/c/render_main:
golden files, well-formedness and escaping under hostile input, merging at scale."""
import filecmp
import os
import subprocess
import random
import re
import shutil
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from render_helpers import GOLDEN, RENDER_MAIN, ROOT, SOURCES, build_render_main, render  # noqa: F401

SVG_NS = "{http://www.w3.org/2000/svg}"
CMDLINE = "python job.py --n 3 '<&>'"
NOTE = "The allocation that failed asked for 1.0 GiB; 7.7 MiB were tracked."
CASES = [("basic", "peak"), ("hostile", "peak"), ("basic", "oom")]


@pytest.fixture(scope="session", autouse=True)
def render_main():
    return build_render_main()


def run_case(tmp_path, name, kind):
    out = tmp_path / f"{name}-{kind}"
    out.mkdir()
    render(f"{name}.prof", str(out), kind, CMDLINE, NOTE, cwd=GOLDEN)
    return out


@pytest.mark.parametrize("name,kind", CASES)
def test_golden(tmp_path, name, kind):
    """Output is byte-identical to tests/golden/expected (regenerate with tests/golden/regen.sh)."""
    out = run_case(tmp_path, name, kind)
    expected = os.path.join(GOLDEN, "expected", f"{name}-{kind}")
    files = sorted(os.listdir(expected))
    assert sorted(os.listdir(out)) == files
    match, mismatch, errors = filecmp.cmpfiles(expected, out, files, shallow=False)
    assert not mismatch and not errors, f"differs from golden: {mismatch} {errors}"


class StrictHTML(HTMLParser):
    """Collects start tags and fails on obviously broken structure."""
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags = []
        self.text = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse_html(raw):
    try:
        import html5lib  # optional: a real HTML5 parser, strict mode
        html5lib.HTMLParser(strict=True).parse(raw)
    except ImportError:
        pass
    p = StrictHTML()
    p.feed(raw.decode("utf-8"))
    p.close()
    return p


def svg_boxes(path):
    root = ET.parse(path).getroot()
    boxes = []
    for g in root.iter(SVG_NS + "g"):
        if g.get("class") == "f":
            boxes.append({k: g.get(k) for k in ("data-x", "data-w", "data-d", "data-fn", "data-loc", "data-src", "data-m")})
    return root, boxes


def check_widths(boxes, total):
    """Root is the total; at every drawn box its children (drawn or merged) fit within it."""
    assert int(boxes[0]["data-w"]) == total
    by_depth = {}
    for b in boxes:
        by_depth.setdefault(int(b["data-d"]), []).append((int(b["data-x"]), int(b["data-w"])))
    for b in boxes:
        if b["data-m"]:
            continue
        x, w, d = int(b["data-x"]), int(b["data-w"]), int(b["data-d"])
        kids = [(cx, cw) for cx, cw in by_depth.get(d + 1, []) if x <= cx < x + w or (cw == 0 and cx == x)]
        assert sum(cw for _, cw in kids) <= w
        pos = x
        for cx, cw in sorted(kids):
            assert cx == pos, "children must be contiguous from the parent's left edge"
            pos += cw


@pytest.mark.parametrize("name,kind", CASES)
def test_outputs_are_valid_and_escaped(tmp_path, name, kind):
    out = run_case(tmp_path, name, kind)
    prefix = "out-of-memory" if kind == "oom" else "peak-memory"
    for svg in (f"{prefix}.svg", f"{prefix}-reversed.svg"):
        raw = (out / svg).read_bytes()
        raw.decode("utf-8")                      # strict: invalid UTF-8 raises
        root, boxes = svg_boxes(out / svg)       # well-formed XML or raises
        scripts = list(root.iter(SVG_NS + "script"))
        assert len(scripts) == 1 and "alert" not in scripts[0].text
        assert b"<script>alert" not in raw and b"</script><script>" not in raw
        assert raw.count(b"]]>") == 1            # only the end of our own CDATA section
        total = int(root.get("data-total"))
        check_widths(boxes, total)
    html = (out / "index.html").read_bytes()
    p = parse_html(html)
    assert not any(tag == "script" for tag, _ in p.tags)
    assert b"<script>alert" not in html
    objects = [a["data"] for tag, a in p.tags if tag == "object"]
    assert objects == [f"{prefix}.svg", f"{prefix}-reversed.svg"]
    text = "".join(p.text)
    assert CMDLINE in text
    if kind == "oom":
        assert "out-of-memory report" in text and NOTE in text
        assert "Current allocations at out-of-memory time" in (out / f"{prefix}.svg").read_text()
    else:
        assert "Peak Tracked Memory Usage (" in (out / f"{prefix}.svg").read_text()


def test_hostile_strings_round_trip(tmp_path):
    """Hostile names and source lines are shown as text: the parser gives back the characters."""
    out = run_case(tmp_path, "hostile", "peak")
    _, boxes = svg_boxes(out / "peak-memory.svg")
    fns = {b["data-fn"] for b in boxes}
    assert "</script><script>alert(1)</script>" in fns
    assert "ev<i>l&\"q'" in fns
    assert "name]]>with\ufffd\ufffdbytes" in fns
    srcs = {b["data-src"] for b in boxes}
    assert '\u2192   x = "</text><script>alert(1)</script>"  # ]]> <![CDATA[ \ufffd\ufffd bad bytes' in srcs
    assert "\u2192   \u2192   y = \"&amp; \ufffd ctrl\" + 'quote'" in srcs   # tabs visible, control replaced
    html = parse_html((out / "index.html").read_bytes())
    assert "</script><script>alert(1)</script>" in "".join(html.text)


def test_basic_numbers(tmp_path):
    out = run_case(tmp_path, "basic", "peak")
    root, boxes = svg_boxes(out / "peak-memory.svg")
    assert int(root.get("data-total")) == 8000000 + 80056 + 2048 + 4096 + 100 + 10
    load = [b for b in boxes if b["data-fn"] == "load"]
    assert len(load) == 1 and int(load[0]["data-w"]) == 8000100           # identical stacks summed
    assert load[0]["data-src"] == "\u2192   data = np.ones((n, n))"
    _, rboxes = svg_boxes(out / "peak-memory-reversed.svg")
    depth1 = {b["data-fn"]: int(b["data-w"]) for b in rboxes if b["data-d"] == "1"}
    assert depth1["load"] == 8000100 and depth1["make_list"] == 80056
    # main:16 (2048 B, 0.03%) and the two tiny leaves are under 0.1%: one remainder box.
    assert depth1["3 small frames"] == 2048 + 4096 + 10
    html = (out / "index.html").read_text()
    assert "1 malformed line(s)" in html
    assert re.search(r"7\.6 MiB</td><td class=\"num\">98\.93%</td><td><code>src/job\.py:5</code>", html)


def test_prof_is_not_modified_and_errors(tmp_path):
    prof = tmp_path / "in.prof"
    shutil.copy(os.path.join(GOLDEN, "basic.prof"), prof)
    before = prof.read_bytes()
    render(str(prof), str(tmp_path))
    assert prof.read_bytes() == before
    r = subprocess.run([RENDER_MAIN, str(tmp_path / "missing.prof"), str(tmp_path)], capture_output=True)
    assert r.returncode == 1 and b"No such file" in r.stderr
    r = subprocess.run([RENDER_MAIN, str(prof), str(tmp_path)], capture_output=True,
                       env=dict(os.environ, FIL_RENDER_SCRATCH="1000"))
    assert r.returncode == 1 and b"memory" in r.stderr.lower()
    render(str(prof), str(tmp_path / "."), env={"FIL_RENDER_SCRATCH": str(16 << 20)})


def synthetic_prof(path, stacks, seed=7):
    rnd = random.Random(seed)
    files = [f"/srv/app/pkg{i % 13}/mod{i}.py" for i in range(60)]
    funcs = [f"f{i}" for i in range(500)]
    seen = set()
    with open(path, "w") as f:
        while len(seen) < stacks:
            depth = rnd.randint(10, 30)
            st = ";".join(f"{rnd.choice(files[:4] if k < 4 else files)}:{rnd.randint(1, 300)} ({rnd.choice(funcs)})"
                          for k in range(depth))
            if st in seen:
                continue
            seen.add(st)
            f.write(f"{st} {rnd.randint(1, 1 << 20)}\n")


def test_scale_100k_stacks(tmp_path):
    """100,000 distinct stacks: drawn boxes stay capped and widths still add up. Timing is
    printed (run with -s), never asserted."""
    prof = tmp_path / "big.prof"
    synthetic_prof(prof, 100_000)
    out = tmp_path / "out"
    out.mkdir()
    t0 = time.perf_counter()
    render(str(prof), str(out))
    elapsed = time.perf_counter() - t0
    print(f"\nrendered 100k stacks in {elapsed:.3f}s")
    total = sum(int(line.rsplit(" ", 1)[1]) for line in open(prof))
    for svg in ("peak-memory.svg", "peak-memory-reversed.svg"):
        root, boxes = svg_boxes(out / svg)
        assert int(root.get("data-total")) == total
        assert 1 < len(boxes) <= 3000
        assert any(b["data-m"] for b in boxes)
        check_widths(boxes, total)
