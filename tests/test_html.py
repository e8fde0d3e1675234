"""The HTML report, checked the way a reviewer meets it.

Unit tests parse what ``render`` writes: every finding of the bad corpus has
its section, anchors are unique and every internal link lands, a clean run
says so, nothing is fetched, and a trace written to attack the page (markup,
CDATA ends, control and bidi characters in names, handles, devices and even
the file's name) comes out as text.  The browser tests load the pages in
headless Chromium: the DOM it builds has every finding and nothing injected,
and a screenshot is drawn.
"""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
from collections import Counter
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from checker.api import check_file
from checker.core import InputError, Result, fingerprints
from checker.reporters.html import render
from spec import SPEC
from tests.conftest import TRACES

RULES = {r.id: r for r in SPEC.rules}
BAD = sorted(glob.glob(os.path.join(TRACES, "bad", "*", "*.jsonl")))
OK = sorted(glob.glob(os.path.join(TRACES, "ok", "*.jsonl")))
CHROMIUM = "/usr/bin/chromium"
VOID = {"meta", "br", "hr", "img", "input", "link", "wbr", "col", "source", "area", "base", "embed", "track"}

# What an attacker who controls a trace would write.
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
PWN = "<script>document.title='PWNED'</script><img src=x onerror=\"document.body.setAttribute('data-pwned',1)\">"
HOSTILE = f"{SCRIPT}{IMG}]]></svg>é☃𝄞\u202eevil\x01\x07\x1b[31m\x7f\x85{PWN}"
HANDLE = f"0xB{SCRIPT}{IMG}]]></svg>\x01é\u202e"
ATTACH = f"A'{IMG}</svg>]]>"
PAYLOADS = [SCRIPT, IMG, "<img", "<script", "]]>", "\u202e", "onerror=alert(1)>"]
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class Doc(HTMLParser):
    """Tags, ids, links and text of a page; end tags that do not close what is open are problems."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.chunks: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        else:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def ids(self) -> list[str]:
        return [a["id"] or "" for _, a in self.tags if "id" in a]

    def named(self, name: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == name]


def well_formed(page: str) -> Doc:
    doc = Doc(page)
    assert doc.problems == [] and doc.stack == [], (doc.problems[:5], doc.stack)
    return doc


def self_contained(doc: Doc) -> None:
    """Nothing the page would fetch, run or navigate to elsewhere."""
    assert not doc.named("script") and not doc.named("img") and not doc.named("link") and not doc.named("iframe")
    for tag, attrs in doc.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            assert name not in ("src", "srcset", "action", "formaction", "poster", "data", "style"), (tag, name)
            if name == "href" or name.endswith(":href"):
                assert (value or "").startswith("#"), (tag, value)
            if name != "xmlns":
                assert "://" not in (value or "") or name == "title", (tag, name, value)
    assert [t for t, _ in doc.tags].count("style") == 1


@pytest.fixture(scope="module")
def bad_results() -> list[Result]:
    return [check_file(p) for p in BAD]


@pytest.fixture(scope="module")
def bad_page(bad_results: list[Result]) -> str:
    return render(bad_results)


def anchors_of(results: list[Result]) -> list[str]:
    return [f"f-{fp}" for r in results for fp in fingerprints(r)]


def article(page: str, anchor: str) -> str:
    start = page.index(f'id="{anchor}"')
    return page[start:page.index("</article>", start)]


# --- the bad corpus ------------------------------------------------------------------------------------------------


def test_every_finding_of_the_bad_corpus_has_a_section(bad_results: list[Result], bad_page: str) -> None:
    doc = well_formed(bad_page)
    self_contained(doc)
    findings = [f for r in bad_results for f in r.findings]
    assert len(findings) >= len(BAD) > 50
    ids = doc.ids()
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    anchors = anchors_of(bad_results)
    assert len(set(anchors)) == len(anchors) == len(findings) == len(doc.named("article"))
    assert set(anchors) <= set(ids)
    for link in doc.named("a"):  # every internal link lands
        assert (link["href"] or "")[1:] in ids, link
    for rule in {f.rule for f in findings} | {os.path.basename(os.path.dirname(p)) for p in BAD}:
        assert rule in doc.text, rule
        assert f'id="rule-{rule}"' in bad_page
    assert len(doc.named("svg")) == len(findings)


def test_summary_counts(bad_results: list[Result], bad_page: str) -> None:
    findings = [f for r in bad_results for f in r.findings]
    errors = sum(1 for f in findings if RULES[f.rule].severity.value == "error")
    text = Doc(bad_page).text
    assert f"checked {len(bad_results)} trace(s)" in text and f"{len(findings)} finding(s)" in text
    assert f"{errors}error(s)" in text and f"{len(findings) - errors}warning(s)" in text  # the cards
    for rule, n in Counter(f.rule for f in findings).items():
        row = bad_page[bad_page.index(f'id="rule-{rule}"'):]
        row = row[:row.index("</tr>")]
        assert f'<td class="num">{n}</td>' in row and row.count('href="#f-') == n + 1, rule


def test_a_finding_section_says_what_where_why_and_how_to_reproduce(bad_results: list[Result],
                                                                      bad_page: str) -> None:
    [r] = [r for r in bad_results if "/LOCK-MOVE-NOTIFY-RESV/" in r.file]
    [f] = r.findings
    rule = RULES[f.rule]
    part = article(bad_page, anchors_of([r])[0])
    text = Doc(part.split(">", 1)[1]).text
    for want in (f.rule, rule.severity.value, rule.message, f"{r.file}:{f.line}", "Linux 5.7+",
                 "drivers/dma-buf/dma-buf.c: dma_buf_move_notify (dma_resv_assert_held)",
                 f"dmaspec check --profile latest {r.file}"):
        assert want in text, want
    svg = part[part.index("<svg"):part.index("</svg>")]
    svg_text = Doc(svg).text
    # a lifeline per thread and per object, an arrow per event, the breaking one highlighted
    for lane in ("thread 3355", "thread 214", "buffer", "resv", "Xorg:gpu1", "kworker/u32:5"):
        assert lane in svg_text, lane
    assert svg.count('class="arrow"') == 6  # export and attach name buffer and resv; so does move_notify
    hit = svg[svg.index('<g class="ev hit">'):]
    assert "dma_buf_move_notify" in hit[:hit.index("</g>")]
    # the events, with the breaking one marked, and which objects each touched
    rows = part[part.index('<table class="events">'):part.index("</table>")]
    assert rows.count("<tr") == 4 and '<tr class="hit"' in rows and "▶ 6" in rows
    assert "buffer 0xffff888107c1a000 <small>(created)</small>" in rows
    # the state of each object
    assert "buffer &#x27;0xffff888107c1a000&#x27; (live): refs=1" in part and "not in the trace" in part


def test_end_of_trace_and_objectless_findings(bad_results: list[Result], bad_page: str) -> None:
    [leak] = [r for r in bad_results if "/ATT-LEAK/" in r.file]
    part = article(bad_page, anchors_of([leak])[0])
    assert "end of trace: still open" in part and '<circle class="open"' in part
    [errptr] = [r for r in bad_results if "/API-ERR-PTR-USED/attach-error" in r.file]
    part = article(bad_page, anchors_of([errptr])[0])
    assert "no object was involved" in part and '<path class="arrow"' in part  # a message to itself


# --- clean runs, odd inputs ----------------------------------------------------------------------------------------


def test_a_clean_run_says_no_finding() -> None:
    results = [check_file(p) for p in OK]
    page = render(results)
    doc = well_formed(page)
    self_contained(doc)
    assert "no finding" in doc.text and "clean" in doc.text and "No finding." in doc.text
    assert not doc.named("article") and not doc.named("svg")
    assert f"checked {len(OK)} trace(s)" in doc.text
    assert "no finding" in Doc(render([])).text


def test_same_trace_twice_keeps_anchors_unique(bad_results: list[Result]) -> None:
    some = bad_results[:5]
    doc = well_formed(render(some + some))
    ids = doc.ids()
    assert len(ids) == len(set(ids))
    assert len(doc.named("article")) == 2 * sum(len(r.findings) for r in some)


def test_only_the_first_findings_in_full(bad_results: list[Result]) -> None:
    doc = well_formed(render(bad_results, max_findings=3))
    assert len(doc.named("article")) == 3 and "Only the first 3 of" in doc.text
    for link in doc.named("a"):
        assert (link["href"] or "")[1:] in doc.ids(), link


def test_lines_that_cannot_be_reread(tmp_path: Path) -> None:
    """The trace changed (or went) between checking and rendering: the report says so and still renders."""
    path = tmp_path / "t.jsonl"
    path.write_text(Path(BAD[0]).read_text())
    result = check_file(str(path))
    path.write_text("not json\n" * 3 + "[1, 2]\n" * 3 + '{"op": 5, "args": [1], "tid": {"x": 1}}\n' * 10)
    well_formed(render([result]))
    path.unlink()
    page = render([result])
    well_formed(page)
    assert "could not be re-read" in page


# --- a hostile trace -----------------------------------------------------------------------------------------------


def hostile_trace(tmp_path: Path) -> str:
    events = [
        {"format": "dmaspec-trace", "version": 1, "profile": "latest"},
        {"op": "marker", "kind": "annotation", "tid": 7, "args": {"text": HOSTILE}, "comm": HOSTILE},
        {"op": "dma_buf_export", "tid": 7, "pid": 7, "comm": HOSTILE, "args": {"exp_name": HOSTILE, "size": 4096},
         "ret": HANDLE},
        {"op": "dma_buf_attach", "tid": 7, "comm": HOSTILE, "args": {"dmabuf": HANDLE, "dev": HOSTILE}, "ret": ATTACH},
        {"op": "dma_buf_map_attachment_unlocked", "tid": 8, "comm": HOSTILE,
         "args": {"attach": ATTACH, "direction": 1}, "ret": "0x5" + HOSTILE},
        {"op": "dma_buf_detach", "tid": 7, "args": {"dmabuf": HANDLE, "attach": ATTACH}},
        {"op": "dma_buf_put", "tid": 7, "args": {"dmabuf": HANDLE}},
        {"op": "dma_buf_put", "tid": 7, "args": {"dmabuf": HANDLE, HOSTILE: HOSTILE}},
        {"op": "dma_buf_export", "tid": 7, "args": {"exp_name": HOSTILE, "size": 1}, "ret": "0xC" + SCRIPT},
    ]
    path = tmp_path / f'trace{IMG}é\x01.jsonl'
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    return str(path)


def assert_inert(page: str) -> Doc:
    for payload in PAYLOADS:
        assert payload not in page, payload
    assert not CONTROL.search(page), CONTROL.search(page)
    assert page.count("</svg>") == page.count("<svg ")
    doc = well_formed(page)
    self_contained(doc)
    return doc


def test_hostile_trace_is_shown_as_text(tmp_path: Path) -> None:
    path = hostile_trace(tmp_path)
    result = check_file(path)
    assert {f.rule for f in result.findings} >= {"ATT-DETACH-WHILE-MAPPED", "REF-USE-AFTER-RELEASE"}
    page = render([result], [InputError(path, 3, HOSTILE)])
    doc = assert_inert(page)
    # it did reach the page, as text
    assert escape(SCRIPT) in page and escape(IMG) in page and "é☃𝄞" in page and "\\u202eevil\\x01" in page
    assert SCRIPT in doc.text and IMG in doc.text  # what the reviewer reads is what the trace said
    svg_titles = re.findall(r"<title>(.*?)</title>", page)
    assert any(escape(SCRIPT) in t for t in svg_titles)


def test_hostile_names_in_input_errors_and_notes(tmp_path: Path) -> None:
    result = check_file(hostile_trace(tmp_path))
    result.ignored[HOSTILE] += 1
    result.withheld["REF-LEAK"] += 1
    page = render([result], [InputError(HOSTILE, 0, HOSTILE), InputError("x", 1, SCRIPT)], engine="interpreter")
    assert_inert(page)
    assert "--engine interpreter" in page


# --- in a browser --------------------------------------------------------------------------------------------------


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; CI does it "
                    "in .ci/run) to run the browser tests")
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
    # its own session, so that a hung browser goes with all its helpers
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("chromium did not finish in 120 s: did a script in the page open a dialog?")
    assert proc.returncode == 0, err[-3000:]
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def test_browser_shows_every_finding_and_draws_it(tmp_path: Path, bad_results: list[Result],
                                                  bad_page: str) -> None:
    report = tmp_path / "report.html"
    report.write_text(bad_page, encoding="utf-8")
    dom = Doc(chromium(tmp_path, "--dump-dom", report.as_uri()).stdout)
    ids = set(dom.ids())
    assert set(anchors_of(bad_results)) <= ids
    for rule in {f.rule for r in bad_results for f in r.findings}:
        assert rule in dom.text and f"rule-{rule}" in ids
    assert not dom.named("script") and not dom.named("img") and not dom.named("iframe")
    assert len(dom.named("svg")) == sum(len(r.findings) for r in bad_results)

    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,4000", report.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 4000)
    assert len(data) > 100_000  # a page of tables and text, not a blank one


def test_browser_runs_nothing_from_a_hostile_trace(tmp_path: Path) -> None:
    path = hostile_trace(tmp_path)
    report = tmp_path / "hostile.html"
    page = render([check_file(path)], [InputError(path, 2, HOSTILE)])
    report.write_text(page, encoding="utf-8")
    done = chromium(tmp_path, "--dump-dom", report.as_uri())
    dom = Doc(done.stdout)
    assert not dom.named("script") and not dom.named("img")
    assert all(not name.startswith("on") for _, attrs in dom.tags for name in attrs)
    assert SCRIPT in dom.text and IMG in dom.text  # shown, as text
    # the document's title is still ours, no attribute was set
    assert re.search(r"<title>dmaspec report: \d+ finding\(s\) in 1 trace\(s\)</title>", done.stdout)
    assert not any("data-pwned" in attrs for _, attrs in dom.tags)
