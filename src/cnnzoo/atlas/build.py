"""``cnnzoo atlas``: gather the facts, write the pages.

The output folder is the atlas' own: a folder that holds files but no ``.cnnzoo-atlas``
marker is refused (a user's files are never overwritten); an atlas built before is rebuilt
in place, every file written atomically, and the files the previous build wrote that this
one does not (a model left out by ``--models``) removed, listed in the marker.
"""

from __future__ import annotations

import json
import re
import time
from html import escape
from importlib import resources
from pathlib import Path

import cnnzoo
from cnnzoo.atlas import pages
from cnnzoo.atlas.blocks import BLOCKS
from cnnzoo.atlas.content import LINEAGE, recipe_for
from cnnzoo.atlas.facts import ModelFacts, load_all
from cnnzoo.atlas.svg import PALETTE, Point, TimelineNode, block_tree, chart_svg, diagram_html, human, timeline_svg
from cnnzoo.errors import ConfigError
from cnnzoo.paper_figures import PAPER_FIGURES
from cnnzoo.rundir import OutputDirError, atomic_write_bytes, read_record

MARKER = ".cnnzoo-atlas"
CACHE = ".cache"
STATIC = ("atlas.css", "atlas.js")
_LINEAGE_NAMES = {name for edge in LINEAGE for name in (edge.source, edge.target)}


class AtlasWriter:
    """Writes files below ``root`` atomically and remembers them for the marker."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.written: list[str] = []

    def write(self, relative: str, data: str | bytes) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data.encode() if isinstance(data, str) else data)
        self.written.append(relative)


def open_output(out: Path) -> list[str]:
    """Check ``out`` may hold the atlas; return the files the previous build there wrote."""
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"{out} is a file, not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        marker = out / MARKER
        if not marker.is_file():
            raise OutputDirError(f"{out} holds files but is not an atlas built by cnnzoo (no {MARKER}); "
                                 "choose an empty or new folder for --out")  # fmt: skip
        try:
            return list(json.loads(marker.read_text()).get("files", []))
        except ValueError:
            raise OutputDirError(f"{marker} is damaged; delete the folder {out} to build the atlas again") from None
    return []


def write_marker(out: Path, files: list[str]) -> None:
    """``.cnnzoo-atlas``: this folder is an atlas, and the files its build wrote."""
    record = {"built_by": f"cnnzoo {cnnzoo.__version__}", "files": sorted(set(files))}
    atomic_write_bytes(out / MARKER, json.dumps(record, indent=1).encode())


def select_models(pattern: str) -> list[str]:
    """The registered models matching any of the comma-separated shell-style ``pattern``s."""
    names: set[str] = set()
    for part in pattern.split(","):
        matched = cnnzoo.list_models(part.strip(), from_index=True)  # no torch before the arguments are checked
        if not matched:
            raise ConfigError(f"no registered model matches {part.strip()!r} (--models); see `cnnzoo list`")
        names.update(matched)
    return sorted(names)


def reported_top1(info) -> float | None:
    """The ImageNet top-1 (%) the paper reports, as the registry records it (``ModelInfo.reported``)."""
    reported = getattr(info, "reported", None)
    return getattr(reported, "top1", None)


def _results_rows(results_md: Path | None, name: str) -> str:
    """The table rows of docs/results.md that name ``name`` (in backticks), under their tables' headings."""
    if results_md is None or not results_md.is_file():
        return "<p>No measured results are recorded in this installation (docs/results.md is absent).</p>"
    sections: dict[str, tuple[list[str], list[list[str]]]] = {}
    heading, header = "", None
    for line in results_md.read_text().splitlines():
        if line.startswith("#"):
            heading, header = line.lstrip("#").strip(), None
        elif line.lstrip().startswith("|"):
            cells = pages.cells(line)
            if header is None:
                header = cells
            elif not set(line.strip()) <= set("|-: ") and f"`{name}`" in line:
                sections.setdefault(heading, (header, []))[1].append(cells)
        else:
            header = None
    if not sections:
        return "<p>The project has not measured this net yet (docs/results.md names it in no table).</p>"
    html = []
    for title, (header, rows) in sections.items():
        html.append(f"<h3>{pages.inline(title)}</h3>" + pages.table([pages.inline(h) for h in header],
                                                              [[pages.inline(c) for c in r] for r in rows],
                                                              numeric_from=len(header)))  # fmt: skip
    return "".join(html) + '<p class="note">Rows of docs/results.md that name this model.</p>'


def _docs_results() -> Path | None:
    path = Path(cnnzoo.__file__).resolve().parents[2] / "docs" / "results.md"
    return path if path.is_file() else None


# --------------------------------------------------------------------------- the index
def _paper_nodes(infos: dict) -> list[TimelineNode]:
    """One node per paper, labelled with its most representative model name."""
    groups: dict[tuple[str, str], list[str]] = {}
    for name, info in infos.items():
        groups.setdefault((info.family, info.paper.title), []).append(name)
    nodes = []
    for (family, _), names in groups.items():
        # the model the lineage names, else one named like the family, else the shortest name
        label = min(names, key=lambda n: (n not in _LINEAGE_NAMES, not n.startswith(family[:4]), len(n), n))
        info = infos[label]
        nodes.append(TimelineNode(label, family, info.year, f"models/{label}.html", info.paper.title))
    return nodes


def index_page(infos: dict, facts: dict[str, ModelFacts], colours: dict[str, str], block_users: dict) -> str:
    families = sorted({i.family for i in infos.values()}, key=lambda f: (min(i.year for i in infos.values() if i.family == f), f))
    years = sorted({i.year for i in infos.values()})
    nodes = _paper_nodes(infos)
    labels = {n.label for n in nodes}
    edges = [e for e in LINEAGE if e.source in labels and e.target in labels]
    top1 = {n: reported_top1(i) for n, i in infos.items()}
    with_top1 = {n for n, v in top1.items() if v}
    if with_top1:
        points = [Point(n, infos[n].family, infos[n].year, facts[n].totals["macs"], top1[n], f"models/{n}.html",
                        n in labels) for n in sorted(with_top1)]  # fmt: skip
        chart = chart_svg(points, colours, "reported ImageNet top-1", y_log=False)
        chart_note = ("ImageNet top-1 as each paper reports it (cnnzoo/reported_accuracy.py, the data of "
                      "<code>cnnzoo compare --plot</code>) against cnnzoo's count of multiply-adds; nets whose "
                      "paper gives no ImageNet top-1 are left out.")  # fmt: skip
    else:
        points = [Point(n, i.family, i.year, facts[n].totals["macs"], facts[n].totals["params"], f"models/{n}.html",
                        n in labels) for n, i in infos.items()]  # fmt: skip
        chart = chart_svg(points, colours, "parameters (log scale)", y_log=True)
        chart_note = ("The registry records no accuracies yet, so this is parameters against multiply-adds, "
                      "both counted by cnnzoo.summary.")  # fmt: skip
    options = "".join(f'<option value="{escape(f)}">{escape(f)}</option>' for f in families)
    def year_options(selected: int) -> str:
        return "".join(f'<option value="{y}"{" selected" if y == selected else ""}>{y}</option>' for y in years)

    filters = (
        '<form class="filters" id="filters">'
        f'<label>family <select id="filter-family"><option value="">all</option>{options}</select></label> '
        f'<label>from <select id="filter-from">{year_options(years[0])}</select></label> '
        f'<label>to <select id="filter-to">{year_options(years[-1])}</select></label> '
        '<span id="filter-count"></span></form>'
    )  # fmt: skip
    lineage = "".join(
        f'<li data-family="{escape(infos[e.target].family)}" data-year="{infos[e.target].year}">'
        f'<a href="models/{escape(e.source)}.html">{escape(e.source)}</a> &#8594; '
        f'<a href="models/{escape(e.target)}.html">{escape(e.target)}</a>: {escape(e.what)}</li>' for e in edges
    )
    legend = "".join(f'<span class="swatch" data-family="{escape(f)}"><i style="background:{colours[f]}"></i>'
                     f"{escape(f)}</span>" for f in families)  # fmt: skip
    sections = []
    for family in families:
        names = sorted((n for n, i in infos.items() if i.family == family), key=lambda n: (infos[n].year, n))
        rows, attrs = [], []
        for n in names:
            i, t = infos[n], facts[n].totals
            rows.append([f'<a href="models/{escape(n)}.html">{escape(n)}</a>', str(i.year), escape(i.description),
                         "x".join(map(str, i.input_size)), human(t["params"]), human(t["macs"])])  # fmt: skip
            attrs.append(f' data-family="{escape(family)}" data-year="{i.year}"')
        sections.append(f'<section class="family" id="family-{escape(family)}" data-family="{escape(family)}">'
                        f"<h3>{escape(family)}</h3>"
                        + pages.table(["model", "year", "", "input", "params", "MACs"], rows, numeric_from=3, attrs=attrs)
                        + "</section>")  # fmt: skip
    block_items = "".join(
        f'<li><a href="blocks/{b.slug}.html">{escape(b.title)}</a> <span class="note">'
        f"{len(block_users[b.slug])} of the nets here</span></li>" for b in BLOCKS
    )
    body = (
        f"<h1>cnnzoo atlas</h1><p class=\"lead\">{len(infos)} networks in {len(families)} families, "
        f"{years[0]}&ndash;{years[-1]}, each counted layer by layer by cnnzoo and checked against its paper.</p>"
        + filters
        + '<h2 id="timeline">Timeline and lineage</h2><p class="note">One box per paper (it opens the page of '
          "one of its nets); an arrow says what a net took from an earlier one (hover it, or read the list).</p>"
        + f'<div class="scroll">{timeline_svg(nodes, edges, colours)}</div>'
        + f'<details class="lineage"><summary>What each took from which</summary><ul>{lineage}</ul></details>'
        + f'<h2 id="chart">Cost</h2><p class="note">{chart_note}</p><div class="scroll">{chart}</div>'
        + f'<p class="legend">{legend}</p>'
        + '<h2 id="models">Models</h2>' + "".join(sections)
        + f'<h2 id="blocks">Building blocks</h2><ul class="blocks">{block_items}</ul>'
        + '<h2>Experiments</h2><p><a href="experiments.html">The brief\'s experiments</a>: their reports, or the '
          "commands that produce them.</p>"
    )  # fmt: skip
    return pages.page("index", body)


# --------------------------------------------------------------------------- blocks
def _block_examples(block) -> tuple[list[list[str]], str]:
    from torch import nn

    rows, macs = [], []
    for example in block.examples():
        # wrapped so that the module itself is the one row at depth 1: its output and receptive field
        report = cnnzoo.summary(nn.Sequential(example.build()), example.input_size, depth=1)
        last = report.rows[-1]
        c, h, w = example.input_size
        row = [f"{escape(example.label)} <span class=\"note\">on {h}x{w}x{c}</span>",
               "x".join(map(str, last.output_shape)), f"{report.total_params:,}", human(report.total_macs)]
        if block.receptive_field:
            row.append(str(last.receptive_field))
        rows.append(row)
        macs.append(report.total_macs)
    ratio = ""
    if len(macs) == 2 and macs[0] and macs[1]:
        ratio = f"The first costs {macs[0] / macs[1]:.2f}x the multiply-adds of the second."
    return rows, ratio


# --------------------------------------------------------------------------- experiments
def _experiment_runs(runs: Path | None) -> dict[str, Path]:
    """Experiment name -> its folder, for the folders in ``runs`` (or ``runs`` itself) holding one."""
    found: dict[str, Path] = {}
    if runs is None:
        return found
    for folder in [runs, *sorted(p for p in runs.iterdir() if p.is_dir())]:
        record = read_record(folder)
        if record and str(record.get("kind", "")).startswith("experiment:") and (folder / "results.md").is_file():
            found.setdefault(record["kind"].split(":", 1)[1], folder)
    return found


def _takes_out(experiment) -> bool:
    """Whether the experiment writes into an ``--out`` folder (the counting ones only print)."""
    import argparse

    parser = argparse.ArgumentParser()
    if experiment.add_arguments is not None:
        experiment.add_arguments(parser)
    return any("--out" in action.option_strings for action in parser._actions)


def experiments_page(writer: AtlasWriter, runs: Path | None) -> str:
    from cnnzoo.experiments import list_experiments

    done = _experiment_runs(runs)
    parts = []
    for experiment in list_experiments():
        slug = re.sub(r"[^a-z0-9-]", "-", experiment.name.lower())
        command = f"cnnzoo experiment {experiment.name}"
        if _takes_out(experiment):
            command += f" --out runs/experiment-{experiment.name}"
        html = [f'<section class="experiment" id="{slug}"><h2>{escape(experiment.name)}</h2>'
                f"<p>{escape(experiment.help)}</p>"]  # fmt: skip
        folder = done.get(experiment.name)
        if folder is None:
            html.append(f"<p>No runs of it in {'--runs' if runs is None else escape(str(runs))}; it is produced by:</p>"
                        f"<pre>{escape(command)}</pre>")  # fmt: skip
        else:
            html.append(f'<p class="note">The report in {escape(str(folder))}:</p>')
            html.append(pages.markdown_html((folder / "results.md").read_text()))
            for png in sorted(folder.glob("*.png")):
                relative = f"experiments/{slug}/{png.name}"
                writer.write(relative, png.read_bytes())
                html.append(f'<figure><img src="{escape(relative)}" alt="{escape(png.stem)}"></figure>')
        html.append("</section>")
        parts.append("".join(html))
    intro = ("<h1>Experiments</h1><p class=\"lead\">The brief's experiments, each one command. With "
             "<code>cnnzoo atlas --runs DIR</code> the reports of the experiments run into DIR are shown here.</p>")  # fmt: skip
    return pages.page("experiments", intro + "".join(parts))


# --------------------------------------------------------------------------- the build
def build_atlas(out: str | Path, pattern: str = "*", runs: str | Path | None = None, workers: int = 1) -> dict:
    """Write the atlas of the models matching ``pattern`` into ``out``; returns counts and timings.

    ``workers`` > 1 traces the models not cached yet in that many forked processes: safe from
    the command line (nothing has run in torch yet), not after torch has started its threads.
    """
    start = time.perf_counter()
    out = Path(out)
    runs_dir = Path(runs) if runs is not None else None
    if runs_dir is not None and not runs_dir.is_dir():
        raise ConfigError(f"--runs {runs_dir}: no such folder")
    previous = open_output(out)
    names = select_models(pattern)
    out.mkdir(parents=True, exist_ok=True)
    # the marker first: a build stopped half-way leaves a folder that is still known as an atlas
    write_marker(out, previous)
    writer = AtlasWriter(out)
    infos = {n: cnnzoo.model_info(n) for n in names}
    facts = load_all(names, out / CACHE, workers)
    traced = time.perf_counter()
    families = sorted({i.family for i in infos.values()}, key=lambda f: (min(i.year for i in infos.values() if i.family == f), f))
    colours = {f: PALETTE[i % len(PALETTE)] for i, f in enumerate(families)}
    block_users = {b.slug: [(n, infos[n].family) for n in names if b.slug in facts[n].blocks] for b in BLOCKS}
    titles = {b.slug: b.title for b in BLOCKS}
    results_md = _docs_results()
    for name in names:
        info, f = infos[name], facts[name]
        tree = block_tree(f.rows, f.containers)
        # a net of a few top-level parts (VGG's features and classifier) shows their layers at once
        diagram = diagram_html(tree, f.totals["macs"], open_levels=1 if len(tree) <= 6 else 0)
        recipe_name = recipe_for(info.family, info.input_size[1])
        recipe = None
        if recipe_name:
            recipe = (recipe_name, (resources.files("cnnzoo") / "recipes" / f"{recipe_name}.yaml").read_text())
        page = pages.model_page(info, f, PAPER_FIGURES.get(name), diagram, [(s, titles[s]) for s in f.blocks],
                                recipe, _results_rows(results_md, name))  # fmt: skip
        writer.write(f"models/{name}.html", page)
    for block in BLOCKS:
        rows, ratio = _block_examples(block)
        writer.write(f"blocks/{block.slug}.html", pages.block_page(block, rows, block_users[block.slug], ratio))
    writer.write("experiments.html", experiments_page(writer, runs_dir))
    writer.write("index.html", index_page(infos, facts, colours, block_users))
    static = resources.files("cnnzoo.atlas") / "static"
    for name in STATIC:
        writer.write(name, (static / name).read_bytes())
    for stale in set(previous) - set(writer.written):
        path = out / stale
        if path.is_file() and out.resolve() in path.resolve().parents:
            path.unlink()
    write_marker(out, writer.written)
    # the folders that held only files of the previous build, deepest first
    for folder in sorted({(out / f).parent for f in previous}, key=lambda p: -len(p.parts)):
        if folder != out and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return {"models": len(names), "blocks": len(BLOCKS), "files": len(writer.written),
            "trace_s": traced - start, "total_s": time.perf_counter() - start}  # fmt: skip
