"""`cnnzoo atlas` (issue 16): the static site's pages, links and numbers, and the pages in headless Chromium.

The atlas of a few small nets is built once per session by the command line; the browser tests
need Debian's `chromium` (scripts/ensure-chromium.sh installs it) and are skipped without it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from cnnzoo.atlas.blocks import BLOCKS
from cnnzoo.atlas.pages import markdown_html

#: small nets that between them hold most of the building blocks, and a plain twin (no residual block)
SUBSET = ["lenet5", "plain20", "resnet20", "googlenet", "mobilenet_v1_025", "shufflenet_v1_g3", "squeezenet1_0",
          "densenet_bc_100_12", "nin_cifar", "preact_resnet164"]  # fmt: skip
VOID = {"meta", "link", "br", "img", "input", "hr", "wbr", "source", "area", "base", "col", "embed", "track"}


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "cnnzoo", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)  # fmt: skip


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory) -> Path:
    """A runs folder with one finished experiment report (as `cnnzoo experiment degradation` writes it)."""
    runs = tmp_path_factory.mktemp("runs")
    exp = runs / "experiment-degradation"
    exp.mkdir()
    (exp / "run.json").write_text(json.dumps({"kind": "experiment:degradation", "settings": {}}))
    (exp / "results.md").write_text("| model | depth | test error |\n|:--|--:|--:|\n| `plain20` | 20 | 9.1% |\n"
                                    "| `resnet20` | 20 | 8.2% |\n\nThe deeper plain net trains **worse**.\n")  # fmt: skip
    shutil.copy(Path(__file__).parents[1] / "docs" / "transfer.png", exp / "degradation.png")
    return runs


@pytest.fixture(scope="session")
def atlas(tmp_path_factory, runs_dir) -> Path:
    out = tmp_path_factory.mktemp("atlas") / "site"
    result = run_cli("atlas", "--out", str(out), "--models", ",".join(SUBSET), "--runs", str(runs_dir))
    assert result.returncode == 0, result.stderr
    assert f"{len(SUBSET)} models" in result.stdout
    return out


def html_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.html"))


class _Checker(HTMLParser):
    """Every element closed, in order; collects links, image sources and ids."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, tuple]] = []
        self.errors: list[str] = []
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self._attrs(tag, attrs)
        if tag not in VOID:
            self.stack.append((tag, self.getpos()))

    def handle_startendtag(self, tag, attrs):
        self._attrs(tag, attrs)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1][0] != tag:
            self.errors.append(f"</{tag}> at {self.getpos()} closes {self.stack[-1] if self.stack else 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)

    def _attrs(self, tag, attrs):
        for key, value in attrs:
            if key == "id":
                self.ids.add(value)
            if key in ("href", "src") and value is not None:
                self.links.append(value)


def parse(path: Path) -> _Checker:
    checker = _Checker()
    checker.feed(path.read_text())
    checker.close()
    if checker.stack:
        checker.errors.append(f"unclosed: {checker.stack[-5:]}")
    return checker


# --------------------------------------------------------------------------- pages and links
def test_every_page_is_well_formed_html(atlas):
    pages = html_files(atlas)
    assert len(pages) == len(SUBSET) + len(BLOCKS) + 2  # + index.html, experiments.html
    for page in pages:
        text = page.read_text()
        assert text.startswith("<!DOCTYPE html>"), page
        assert parse(page).errors == [], page


def test_every_internal_link_and_image_resolves(atlas):
    ids = {page: parse(page).ids for page in html_files(atlas)}
    checked = 0
    for page in html_files(atlas):
        for link in parse(page).links:
            url = urlparse(link)
            if url.scheme in ("http", "https"):
                continue
            assert not url.scheme and not link.startswith("/"), f"{page}: {link} is not relative"
            target = (page.parent / unquote(url.path)).resolve() if url.path else page
            assert target.is_file(), f"{page.relative_to(atlas)}: {link}"
            if url.fragment and target.suffix == ".html":
                assert url.fragment in ids[target], f"{page.relative_to(atlas)}: {link} (no such id)"
            checked += 1
    assert checked > 200


def test_a_page_for_every_model_and_building_block(atlas):
    for name in SUBSET:
        assert (atlas / "models" / f"{name}.html").is_file()
    for block in BLOCKS:
        assert (atlas / "blocks" / f"{block.slug}.html").is_file()
    index = (atlas / "index.html").read_text()
    for name in SUBSET:
        assert f'href="models/{name}.html"' in index


def _text(path: Path) -> str:
    return " ".join("".join(parse(path).text).split())


def test_building_blocks_list_the_nets_found_in_their_module_trees(atlas):
    def users(slug):
        html = (atlas / "blocks" / f"{slug}.html").read_text()
        return set(re.findall(r'href="\.\./models/([^"]+)\.html"', html))

    assert users("fire-module") == {"squeezenet1_0"}
    assert users("residual-block") == {"resnet20", "preact_resnet164"}  # plain20 has the blocks, no shortcuts
    assert users("preactivation-block") == {"preact_resnet164"}
    assert users("inception-reduced") == {"googlenet"}
    assert users("channel-shuffle") == {"shufflenet_v1_g3"}
    assert users("group-convolution") == {"shufflenet_v1_g3"}  # depthwise convolutions are not "grouped"
    assert users("depthwise-separable-convolution") == {"mobilenet_v1_025"}
    assert users("dense-block") == {"densenet_bc_100_12"}
    assert users("mlpconv") == {"nin_cifar"}
    assert users("deformable-convolution") == set()
    assert "none of the registered nets" in _text(atlas / "blocks" / "deformable-convolution.html")


def test_inception_worked_example_is_854m_naive_against_271m_reduced(atlas):
    """The brief (002): 854M multiply-adds for the naive module on 28x28x256; 271M with the
    reductions (the notes' 358M counts the 3x3 twice, which the page says)."""
    text = _text(atlas / "blocks" / "inception-naive.html")
    assert "854.20M" in text and "271.35M" in text and "358M" in text
    assert "1,089,952" in text  # the naive module's parameters
    dilated = (atlas / "blocks" / "dilated-convolution.html").read_text()
    assert re.search(r"dilation 1, 2, 4.*?<td class=\"num\">15</td>", dilated)  # receptive field of the stack


def test_model_page_has_paper_totals_diagram_recipe_and_layers(atlas):
    page = atlas / "models" / "mobilenet_v1_025.html"
    text = _text(page)
    assert "MobileNets: Efficient Convolutional Neural Networks" in text
    assert "Howard et al. 2017, Table 6" in text  # the paper's figures and their table
    assert "41.00M" in text and "500.00K" in text  # Table 6: 41M multiply-adds, 0.5M parameters
    assert "cnnzoo train mobilenet_v1_025 -c mobilenet" in text
    html = page.read_text()
    assert 'id="diagram"' in html and html.count('<svg class="box') > 20
    assert 'href="../blocks/depthwise-separable-convolution.html"' in html
    layers = html.split('<table class="layers">')[1].split("</table>")[0]
    import cnnzoo

    assert layers.count("<tr>") - 1 == len(cnnzoo.summary("mobilenet_v1_025").rows)  # minus the header row
    lenet = _text(atlas / "models" / "lenet5.html")
    assert "LeCun et al. 1998, Section II.B" in lenet and "60.00K" in lenet
    assert "No recipe is shipped" in lenet
    # GoogLeNet's auxiliary heads do not run at inference: the paper's 6.8M is beside the rest
    googlenet = (atlas / "models" / "googlenet.html").read_text()
    assert re.search(r"parameters used at inference</td><td[^>]*>6,998,552 \(7.00M\)</td><td[^>]*>6.80M<", googlenet)


def test_measured_results_are_the_rows_of_results_md_naming_the_model(atlas):
    lenet = (atlas / "models" / "lenet5.html").read_text()
    results = lenet.split('id="results"')[1].split('id="layers"')[0]
    assert "Time to accuracy on Fashion-MNIST" in results and "<code>lenet5</code>" in results
    assert "has not measured this net" in _text(atlas / "models" / "nin_cifar.html")


def test_experiments_page_shows_reports_from_runs_and_commands_otherwise(atlas):
    html = (atlas / "experiments.html").read_text()
    degradation = html.split('id="degradation"')[1].split("</section>")[0]
    assert "<code>resnet20</code>" in degradation and "<strong>worse</strong>" in degradation
    assert '<img src="experiments/degradation/degradation.png"' in degradation
    assert (atlas / "experiments" / "degradation" / "degradation.png").is_file()
    batchnorm = html.split('id="batchnorm"')[1].split("</section>")[0]
    assert "cnnzoo experiment batchnorm --out runs/experiment-batchnorm" in batchnorm
    assert "<pre>cnnzoo experiment factorization</pre>" in html  # it only prints: no --out


def test_markdown_tables_lists_and_code():
    html = markdown_html("# Title\n\n| a | b |\n|---|--:|\n| `x` | 1 |\n\n- one\n- two\n\ntext <b>\n")
    assert "<h3>Title</h3>" in html and "<td class=\"\"><code>x</code></td>" in html
    assert "<ul><li>one</li><li>two</li></ul>" in html and "text &lt;b&gt;" in html


# --------------------------------------------------------------------------- the output folder
def test_refuses_a_folder_that_is_not_an_atlas(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = run_cli("atlas", "--out", str(tmp_path), "--models", "lenet5")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "not an atlas built by cnnzoo" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("args, message", [
    (["--models", "no_such_net*"], "no registered model matches"),
    (["--models", "lenet5", "--runs", "/no/such/folder"], "no such folder"),
])  # fmt: skip
def test_bad_arguments_are_one_line_errors(tmp_path, args, message):
    result = run_cli("atlas", "--out", str(tmp_path / "site"), *args)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr
    assert not (tmp_path / "site").exists()


def test_rebuilds_an_atlas_in_place_from_the_cache(atlas, tmp_path, monkeypatch):
    """A rebuild reads the cached summaries (no model is traced again) and removes the pages of
    the models it leaves out."""
    from cnnzoo.atlas import build, facts

    site = tmp_path / "site"
    shutil.copytree(atlas, site)
    (site / "models" / "lenet5.html").write_text("stale")

    def no_tracing(name):
        raise AssertionError(f"{name} traced again")

    monkeypatch.setattr(facts, "compute_facts", no_tracing)
    build.build_atlas(site, "lenet5,resnet20")
    assert sorted(p.name for p in (site / "models").iterdir()) == ["lenet5.html", "resnet20.html"]
    assert (site / "models" / "lenet5.html").read_text().startswith("<!DOCTYPE html>")
    marker = json.loads((site / build.MARKER).read_text())
    assert "models/lenet5.html" in marker["files"] and "models/googlenet.html" not in marker["files"]


# --------------------------------------------------------------------------- in a real browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/ensure-chromium.sh)")
BROWSER_PAGES = ["index.html", "models/googlenet.html", "models/shufflenet_v1_g3.html",
                 "blocks/inception-naive.html", "experiments.html"]  # fmt: skip


def open_in_chromium(page: Path, screenshot: Path) -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and the console messages; a screenshot on the way."""
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,1400",
         "--enable-logging=stderr", "--v=0", f"--user-data-dir={screenshot.parent / 'profile'}",
         f"--screenshot={screenshot}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return result.stdout, console


@pytest.fixture(scope="session")
def browsed(atlas, tmp_path_factory) -> dict[str, tuple[str, list[str], Path]]:
    shots = tmp_path_factory.mktemp("screenshots")
    opened = {}
    for page in BROWSER_PAGES:
        png = shots / (page.replace("/", "_").replace(".html", ".png"))
        dom, console = open_in_chromium(atlas / page, png)
        opened[page] = (dom, console, png)
    return opened


@needs_chromium
def test_pages_load_without_console_errors(browsed):
    for page, (dom, console, _) in browsed.items():
        assert console == [], page
        assert "</html>" in dom, page


@needs_chromium
def test_the_index_filter_script_ran(browsed):
    dom = browsed["index.html"][0]
    assert f'id="filter-count">{len(SUBSET)} models shown<' in dom


@needs_chromium
def test_the_model_diagram_is_in_the_dom(browsed):
    dom = browsed["models/googlenet.html"][0]
    diagram = dom.split('id="diagram"')[1]
    assert diagram.count('<svg class="box') > 50 and "inception3a" in diagram


@needs_chromium
def test_screenshots_are_not_blank(browsed):
    import numpy as np
    from matplotlib.image import imread

    for page, (_, _, png) in browsed.items():
        pixels = imread(png)
        assert pixels.shape[:2] == (1400, 1280), page
        rgb = (pixels[..., :3] * 255).astype(np.uint32)
        colours = np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2])
        assert len(colours) > 50 and pixels[..., :3].std() > 0.05, page


# --------------------------------------------------------------------------- the whole atlas
@pytest.mark.slow
def test_the_whole_atlas(tmp_path):
    """Every registered model and block gets its page and every link resolves (about 1-3 minutes)."""
    import cnnzoo

    out = tmp_path / "site"
    result = run_cli("atlas", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(p.stem for p in (out / "models").glob("*.html")) == cnnzoo.list_models()
    assert sorted(p.stem for p in (out / "blocks").glob("*.html")) == sorted(b.slug for b in BLOCKS)
    for page in html_files(out):
        checker = parse(page)
        assert checker.errors == [], page
        for link in checker.links:
            url = urlparse(link)
            if not url.scheme and url.path:
                assert (page.parent / unquote(url.path)).is_file(), f"{page}: {link}"
