"""The HTML report rendered by a real headless Chromium: the page parses, every chart is in the DOM
and painted, no script runs and nothing is fetched, the page stays short and no label overflows
its chart. The full-page screenshot is kept as ``artifacts/report-html.png`` for a person to look
at (``artifacts/report.html`` is the page).

The page is a realistic month: 30 days, 4 MX hosts, 6 policies that all refuse something (see
``support.report_events.month``). Its height and overflows are measured by the browser itself, on a
copy of the page with a measuring script appended (the page itself has no script and a
Content-Security-Policy that would block one): the layout is the same.

Chromium is required (the Makefile installs it with apt-get install chromium); the test fails
without it rather than skipping."""

from __future__ import annotations

import html
import io
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

from mailpolicy.report import build_report
from mailpolicy.report.render_html import PATH_COLOURS, VERSION_COLOURS, render
from support.report_events import lines, month, txn, would_reject

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]
WIDTH = 1280
MAX_HEIGHT = 4000
"""CSS px. The month below (30 days x 6 policies, every policy refusing something, top-10 lists,
17 suggested exemptions and 10 sealers) measures about 3,800 px at 1280 px wide: four screens of a
1080p display, with the answer (the combined scenario and the per-policy table with one line per
day each) in the first one. Days no longer add height (one sparkline per policy, the numbers in
<details>), a policy adds half a card (two cards a row). The page before measured 20,847 px for
this log (14,908 for 14 days x 4 policies): a per-day table per policy, full-width charts per
policy. The bound leaves room for wording, not for any of those to come back."""
CHART_IDS = [
    "chart-answer",
    "spark-all",
    "spark-spf",
    "spark-dmarc",
    "chart-senders",
    "chart-clients",
    "chart-paths",
    "chart-policy-spf",
    "chart-paths-dmarc",
    "chart-tls",
    "chart-tls-legacy",
]

MEASURE = r"""
<script>
(function () {
  const out = {problems: []};
  const de = document.documentElement;
  const height = () => Math.ceil(Math.max(de.scrollHeight, document.body.scrollHeight));
  function check(state) {
    // text drawn in an SVG chart stays inside the chart
    document.querySelectorAll('svg').forEach(svg => {
      const box = svg.getBoundingClientRect();
      svg.querySelectorAll('text').forEach(t => {
        const b = t.getBoundingClientRect();
        if (b.left < box.left - 0.5 || b.right > box.right + 0.5 || b.top < box.top - 0.5 ||
            b.bottom > box.bottom + 0.5)
          out.problems.push([state, 'text outside its chart', svg.id, t.textContent]);
      });
    });
    // no cell or label is cut: its content is no wider than the box that shows it
    document.querySelectorAll('th, td, summary, p, h1, h2, h3, h4').forEach(el => {
      if (el.getClientRects().length && el.scrollWidth > el.clientWidth + 1)
        out.problems.push([state, 'clipped', el.tagName, el.textContent.slice(0, 80)]);
    });
    // every chart, table and card fits its section: nothing is pushed past the edge
    document.querySelectorAll('section, .card').forEach(el => {
      if (el.scrollWidth > el.clientWidth + 1)
        out.problems.push([state, 'wider than its box', el.id || el.className, '']);
    });
    if (de.scrollWidth > de.clientWidth) out.problems.push([state, 'page wider than the window', '', '']);
  }
  out.height = height();
  check('closed');
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  out.height_open = height();
  check('open');
  const pre = document.createElement('pre');
  pre.id = 'measured';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"""


def _chromium(args: list[str]) -> subprocess.CompletedProcess[str]:
    exe = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    assert exe, "chromium is not installed (apt-get install -y chromium): the HTML test cannot run"
    with tempfile.TemporaryDirectory(prefix="mailpolicy-chromium-") as profile:
        return subprocess.run(
            [exe, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )


def measure(page: str) -> dict[str, Any]:
    """Height (CSS px, details closed and open) and overflow problems of ``page`` laid out by
    Chromium in a window WIDTH px wide."""
    copy = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page).replace(
        "</body>", MEASURE + "</body>"
    )
    with tempfile.TemporaryDirectory(prefix="mailpolicy-measure-") as tmp:
        path = Path(tmp) / "measure.html"
        path.write_text(copy, encoding="utf-8")
        res = _chromium(["--dump-dom", f"--window-size={WIDTH},900", path.as_uri()])
    assert res.returncode == 0, res.stderr[-2000:]
    found = re.search(r'<pre id="measured">(.*?)</pre>', res.stdout, re.S)
    assert found, res.stderr[-2000:]
    result: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return result


def _page() -> str:
    data = month(40_000, seed=30, policies=6) + lines(
        [txn(host="<b>evil</b>.example", policies={"spf": would_reject()}, authenticated=True)]
    )
    return render(build_report(["-"], stdin=io.BytesIO(data)))


def _console_problems(stderr: str) -> list[str]:
    return [
        line
        for line in stderr.splitlines()
        if "CONSOLE" in line or "Uncaught" in line or "Refused to" in line
    ]


def test_html_report_in_headless_chromium() -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = ARTIFACTS / "report.html"
    page.write_text(_page(), encoding="utf-8")
    text = page.read_text()
    assert "<script" not in text.lower()
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in text

    dom = _chromium(["--dump-dom", page.as_uri()])
    assert dom.returncode == 0, dom.stderr[-2000:]
    for chart in CHART_IDS:
        assert f'id="{chart}"' in dom.stdout, chart
    assert dom.stdout.count('class="spark"') >= 7 + 5  # the answer's rows, the TLS versions
    assert dom.stdout.count('class="bar"') >= 30  # the TLS days, the paths
    assert "&lt;b&gt;evil&lt;/b&gt;.example" in dom.stdout
    assert _console_problems(dom.stderr) == []

    # short, and nothing cut at an edge, with every <details> closed and open
    m = measure(text)
    assert m["problems"] == []
    assert 1500 < m["height"] <= MAX_HEIGHT, m["height"]
    assert m["height_open"] > m["height"] + 2000  # the numbers are there, one click away

    shot = ARTIFACTS / "report-html.png"
    shot.unlink(missing_ok=True)
    res = _chromium([f"--screenshot={shot}", f"--window-size={WIDTH},{m['height']}", page.as_uri()])
    assert res.returncode == 0, res.stderr[-2000:]
    assert _console_problems(res.stderr) == []
    img = Image.open(shot).convert("RGB")
    assert img.size == (WIDTH, m["height"])
    colours = img.getcolors(maxcolors=1 << 22)
    assert colours is not None
    counts = {rgb: n for n, rgb in colours}

    def painted(hex_colour: str) -> int:
        rgb = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
        return counts.get(rgb, 0)

    # the stacked TLS bars (TLS 1.3 green) and the authenticated-loss bars (red) are painted
    assert painted(VERSION_COLOURS["TLSv1.3"]) > 20_000
    assert painted("#c62828") > 3_000
    # the bars of how the lost mail came (forwarded with a valid ARC chain, lists, direct)
    assert painted(PATH_COLOURS["forwarded_arc"]) > 300
    assert painted(PATH_COLOURS["mailing_list"]) > 50
    # the header band is dark and the page is not blank
    assert img.getpixel((5, 5)) == (0x1F, 0x2A, 0x37)
    assert len(counts) > 50


def test_the_measure_finds_overflows() -> None:
    """The checks above can fail: a label drawn past its chart, a clipped cell and a table wider
    than its section are all reported, and the height is the page's."""
    page = (
        "<!DOCTYPE html><html><head><style>section{width:300px;overflow-x:auto}"
        "td.cut{max-width:40px;overflow:hidden;white-space:nowrap}</style></head><body>"
        '<section id="s"><svg id="chart" width="100" height="30"><text x="90" y="20">far too long a label'
        '</text></svg><table><tr><td class="cut">a cell whose text does not fit</td>'
        '<td style="min-width:600px">wide</td></tr></table></section>'
        '<div style="height:5000px"></div></body></html>'
    )
    m = measure(page)
    kinds = {p[1] for p in m["problems"]}
    assert kinds >= {"text outside its chart", "clipped", "wider than its box"}, m["problems"]
    assert m["height"] > 5000
