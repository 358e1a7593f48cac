"""`dvc plots show` offline: every vega chart of the page drawn by a headless Chromium with the network cut."""

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import stage_argv

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
DVC_CDN_PAGE = """<!DOCTYPE html><html><head>{refresh_tag}<title>DVC Plot</title>{scripts}</head>
<body>{plot_divs}</body></html>"""


class ChartMarks(HTMLParser):
    """Per chart div: how many drawn items (paths, rects, text...) sit inside vega's data-mark groups."""

    def __init__(self, chart_ids: set[str]):
        super().__init__()
        self.chart_ids, self.marks = chart_ids, {chart: 0 for chart in chart_ids}
        self.stack: list[tuple[str, str | None, bool]] = []  # (tag, chart it lies in, inside a role-mark group)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        chart, in_mark = self.stack[-1][1:] if self.stack else (None, False)
        if tag == "div" and attributes.get("id") in self.chart_ids:
            chart = attributes["id"]
        if in_mark and chart and tag in ("path", "rect", "line", "circle", "text"):
            self.marks[chart] += 1
        in_mark = in_mark or "role-mark" in (attributes.get("class") or "").split()
        if tag not in VOID:
            self.stack.append((tag, chart, in_mark))

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop()[0] != tag:
            pass


def chart_marks(page: Path, dom: str) -> dict[str, int]:
    """Drawn items per vega chart of `page` (the charts are the divs that call vegaEmbed), read from the DOM."""
    chart_ids = set(re.findall(r"vegaEmbed\('#([^']+)'", page.read_text(encoding="utf-8")))
    parser = ChartMarks(chart_ids)
    parser.feed(dom)
    return parser.marks


def offline_dom(page: Path) -> str:
    """The page's DOM after its scripts ran, in a headless Chromium that reaches no network."""
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=10000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A DVC repo with this one's dvc.yaml, params, .dvc/config and templates, its committed metrics, and the
    plot stage's tables written from them."""
    path = tmp_path_factory.mktemp("plots") / "repo"
    path.mkdir()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(path / ".dvc-site-cache")}
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    dvc = str(Path(sys.executable).parent / "dvc")
    subprocess.run([dvc, "init", "-q"], cwd=path, check=True, env=env)
    for name in ("dvc.yaml", "params.yaml", ".dvc/config"):
        shutil.copy2(ROOT / name, path / name)
    shutil.copytree(ROOT / ".dvc/plots", path / ".dvc/plots")
    shutil.copytree(ROOT / "metrics", path / "metrics")
    stage = subprocess.run(stage_argv("plot", sys.executable), cwd=path, capture_output=True, text=True)
    assert stage.returncode == 0, stage.stderr[-2000:]
    return path, dvc, env


def plots_show(workspace, out: Path, *options: str) -> Path:
    path, dvc, env = workspace
    result = subprocess.run([dvc, "plots", "show", "-o", str(out), *options], cwd=path, env=env, capture_output=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return out / "index.html"


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (apt-get install chromium); .ci/run installs it"
)


@needs_chromium
def test_every_vega_chart_is_drawn_offline(workspace, tmp_path):
    page = plots_show(workspace, tmp_path / "page")  # .dvc/config's plots.html_template: the offline page
    assert "cdn.jsdelivr.net" not in page.read_text(encoding="utf-8")
    marks = chart_marks(page, offline_dom(page))
    assert len(marks) == 12
    assert not [chart for chart, count in marks.items() if count == 0], marks


@needs_chromium
def test_the_check_sees_blank_charts_on_dvcs_cdn_page(workspace, tmp_path):
    """The same check on DVC's own page, which loads vega from a CDN: offline, every chart stays empty."""
    template = tmp_path / "cdn.html"
    template.write_text(DVC_CDN_PAGE)
    page = plots_show(workspace, tmp_path / "page", "--html-template", str(template))
    marks = chart_marks(page, offline_dom(page))
    assert len(marks) == 12 and set(marks.values()) == {0}
