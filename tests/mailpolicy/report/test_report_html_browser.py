"""The HTML report rendered by a real headless Chromium: the page parses, every chart is in the DOM
and painted, no script runs and nothing is fetched. The screenshot is kept as
``artifacts/report-html.png`` for a person to look at.

Chromium is required (the Makefile installs it with apt-get install chromium); the test fails
without it rather than skipping."""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

from mailpolicy.report import build_report
from mailpolicy.report.render_html import PATH_COLOURS, VERSION_COLOURS, render
from support.report_events import generate, lines, txn, would_reject

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
CHART_IDS = [
    "chart-policies",
    "chart-enforced",
    "chart-senders",
    "chart-clients",
    "chart-tls",
    "chart-tls-legacy",
    "chart-paths",
    "chart-paths-dmarc",
]


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


def _page() -> str:
    data = b"".join(generate(30_000, seed=3, days=10)) + lines(
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
    html = page.read_text()
    assert "<script" not in html.lower()
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html

    dom = _chromium(["--dump-dom", page.as_uri()])
    assert dom.returncode == 0, dom.stderr[-2000:]
    for chart in CHART_IDS:
        assert f'id="{chart}"' in dom.stdout, chart
    assert dom.stdout.count('class="bar"') >= 30
    assert dom.stdout.count('class="series"') >= 4
    assert "&lt;b&gt;evil&lt;/b&gt;.example" in dom.stdout
    assert _console_problems(dom.stderr) == []

    shot = ARTIFACTS / "report-html.png"
    shot.unlink(missing_ok=True)
    res = _chromium([f"--screenshot={shot}", "--window-size=1280,3200", page.as_uri()])
    assert res.returncode == 0, res.stderr[-2000:]
    assert _console_problems(res.stderr) == []
    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 3200)
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is not None
    counts = {rgb: n for n, rgb in colours}

    def painted(hex_colour: str) -> int:
        rgb = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
        return counts.get(rgb, 0)

    # the stacked TLS bars (TLS 1.3 green) and the authenticated-loss bars (red) are painted
    assert painted(VERSION_COLOURS["TLSv1.3"]) > 20_000
    assert painted("#c62828") > 5_000
    # the bar of how the lost mail came (forwarded with a valid ARC chain, lists, direct)
    assert painted(PATH_COLOURS["forwarded_arc"]) > 300
    assert painted(PATH_COLOURS["mailing_list"]) > 100
    # the header band is dark and the page is not blank
    assert img.getpixel((5, 5)) == (0x1F, 0x2A, 0x37)
    assert len(counts) > 50
