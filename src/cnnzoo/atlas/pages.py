"""The atlas' HTML pages, as functions of the facts :mod:`cnnzoo.atlas.build` gathers.

Every link is relative (``models/resnet50.html``, ``../blocks/fire-module.html``), so the
site works from ``file://`` and from any static server; nothing is loaded from the network.
Torch-free.
"""

from __future__ import annotations

import re
from html import escape

from cnnzoo.atlas.svg import human

COUNTING = ("multiply-adds of convolutions and fully connected layers, bias additions excluded, "
            "per image at the registered input size (cnnzoo.summary)")  # fmt: skip


def page(title: str, body: str, root: str = "") -> str:
    """A whole HTML document; ``root`` is the relative path to the atlas' top ("" or "../")."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · cnnzoo atlas</title>"
        f'<link rel="stylesheet" href="{root}atlas.css"></head><body>'
        f'<header class="top"><a href="{root}index.html">cnnzoo atlas</a>'
        f'<nav><a href="{root}index.html#timeline">timeline</a> <a href="{root}index.html#models">models</a> '
        f'<a href="{root}index.html#blocks">building blocks</a> <a href="{root}experiments.html">experiments</a></nav>'
        f"</header><main>{body}</main>"
        f'<script src="{root}atlas.js"></script></body></html>\n'
    )


def table(header: list[str], rows: list[list[str]], cls: str = "", numeric_from: int = 1, attrs=None) -> str:
    """An HTML table; cells are HTML already; columns from ``numeric_from`` on are right-aligned."""
    klass = f' class="{cls}"' if cls else ""
    head = "".join(f'<th class="{"num" if i >= numeric_from else ""}">{h}</th>' for i, h in enumerate(header))
    body = []
    for index, row in enumerate(rows):
        extra = attrs[index] if attrs else ""
        cells = "".join(f'<td class="{"num" if i >= numeric_from else ""}">{c}</td>' for i, c in enumerate(row))
        body.append(f"<tr{extra}>{cells}</tr>")
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def paper_html(paper) -> str:
    return (f'<p class="paper"><a href="{escape(paper.url)}">{escape(paper.title)}</a><br>'
            f"{escape(paper.authors)}, {paper.year}</p>")  # fmt: skip


# --------------------------------------------------------------------------- markdown
def inline(text: str) -> str:
    text = escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_html(text: str) -> str:
    """The markdown the project writes (headings, pipe tables, lists, code blocks, paragraphs) as HTML.

    Hand-written because no markdown package is among cnnzoo's dependencies and the reports
    use only these few constructs; anything else comes out as a paragraph of text.
    """
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append(f"<pre>{escape(chr(10).join(lines[i + 1:j]))}</pre>")
            i = j + 1
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")) + 2, 6)
            out.append(f"<h{level}>{inline(line.lstrip('#').strip())}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|") and i + 1 < len(lines) and set(lines[i + 1].strip()) <= set("|-: "):
            header = cells(line)
            j = i + 2
            body = []
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                body.append([inline(c) for c in cells(lines[j])])
                j += 1
            out.append(table([inline(h) for h in header], body, numeric_from=len(header)))
            i = j
        elif line.lstrip().startswith(("- ", "* ")):
            items = []
            while i < len(lines) and lines[i].lstrip().startswith(("- ", "* ")):
                items.append(f"<li>{inline(lines[i].lstrip()[2:])}</li>")
                i += 1
            out.append(f"<ul>{''.join(items)}</ul>")
        elif line.strip():
            j = i
            while j < len(lines) and lines[j].strip() and not lines[j].startswith(("#", "```", "|")):
                j += 1
            j = max(j, i + 1)
            out.append(f"<p>{inline(' '.join(lines[i:j]))}</p>")
            i = j
        else:
            i += 1
    return "\n".join(out)


# --------------------------------------------------------------------------- the pages
def model_page(info, facts, figures, diagram: str, blocks: list[tuple[str, str]], recipe: tuple[str, str] | None,
               results: str) -> str:  # fmt: skip
    """``models/<name>.html``."""
    totals = facts.totals
    c, h, w = facts.input_size
    rows = [["parameters", f"{totals['params']:,} ({human(totals['params'])})",
             human(figures.params) if figures and figures.params else "&ndash;"],
            ["multiply-adds", f"{totals['macs']:,} ({human(totals['macs'])})",
             human(figures.macs) if figures and figures.macs else "&ndash;"],
            ["forward activations", f"{totals['activations']:,} ({totals['activation_bytes'] / 2**20:.1f} MiB)", "&ndash;"]]  # fmt: skip
    if facts.idle_params:
        used = totals["params"] - facts.idle_params
        rows.insert(1, ["parameters used at inference", f"{used:,} ({human(used)})", rows[0][2]])
        rows[0][2] = "&ndash;"
    source = (f"<p class=\"note\">Paper's figures: {escape(figures.source)}"
              + (f"; {escape(figures.note)}" if figures.note else "") + ".</p>") if figures else \
        '<p class="note">cnnzoo records no totals from this paper.</p>'  # fmt: skip
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in facts.notes)
    reported = getattr(info, "reported", None)
    if reported is not None:
        notes += f"<p>ImageNet accuracy reported by the paper: {escape(reported.describe())}.</p>"
    block_links = ", ".join(f'<a href="../blocks/{slug}.html">{escape(title)}</a>' for slug, title in blocks) \
        or "none of the atlas' building blocks (plain convolution, pooling and fully connected layers)"
    if recipe:
        recipe_html = (f"<p><code>cnnzoo train {escape(info.name)} -c {escape(recipe[0])}</code> trains it with the "
                       "recipe written for it:</p><details><summary>src/cnnzoo/recipes/{escape(recipe[0])}.yaml</summary>"
                       f"<pre>{escape(recipe[1])}</pre></details>")  # fmt: skip
    else:
        recipe_html = (f"<p>No recipe is shipped for it: <code>cnnzoo train {escape(info.name)}</code> uses the "
                       "defaults (<code>cnnzoo train --help</code>).</p>")  # fmt: skip
    layer_rows = [[escape(r["name"]), escape(r["type"]), escape(r["kernel"]), escape(r["output_shape"]),
                   human(r["params"]), human(r["macs"]), human(r["activations"]), escape(r["receptive_field"]),
                   escape(r["effective_stride"])] for r in facts.rows]  # fmt: skip
    body = (
        f'<h1>{escape(info.name)}</h1><p class="lead">{escape(info.description)}</p>'
        f'<p>family <a href="../index.html#family-{escape(info.family)}">{escape(info.family)}</a> · input '
        f"{c}x{h}x{w} · {info.num_classes} classes</p>"
        + paper_html(info.paper)
        + '<h2 id="totals">Totals</h2>'
        + table(["", "cnnzoo (counted)", "paper"], rows, numeric_from=1)
        + source + notes + f'<p class="note">Counted: {COUNTING}.</p>'
        + '<h2 id="architecture">Architecture</h2><p class="note">Each box is a block or a layer: its output '
          "shape, parameters and multiply-adds; the bar under it is its share of the multiply-adds. Click a "
          "block to open it onto its layers.</p>"
        + f'<div class="diagram" id="diagram">{diagram}</div>'
        + f'<h2 id="blocks">Building blocks</h2><p>{block_links}</p>'
        + f'<h2 id="recipe">Recipe</h2>{recipe_html}'
        + f'<h2 id="results">Measured results</h2>{results}'
        + '<h2 id="layers">Layers</h2><p class="note">The table of <code>cnnzoo summary '
        + escape(info.name) + "</code>: every layer call, RF = receptive field, jump = effective stride.</p>"
        + table(["layer", "type", "kernel", "output", "params", "MACs", "activations", "RF", "jump"], layer_rows,
                "layers", numeric_from=4)
    )  # fmt: skip
    return page(info.name, body, "../")


def block_page(block, examples: list[list[str]], used_by: list[tuple[str, str]], ratio: str) -> str:
    """``blocks/<slug>.html``; ``examples``: rows of (label, output, params, MACs[, RF]) as HTML."""
    header = ["worked example", "output", "params", "multiply-adds"] + (["RF"] if block.receptive_field else [])
    users = ", ".join(f'<a href="../models/{escape(n)}.html">{escape(n)}</a>' for n, _ in used_by) or \
        "none of the registered nets (the layer is in <code>cnnzoo.layers</code> for experiments)"  # fmt: skip
    body = (
        f"<h1>{escape(block.title)}</h1><p class=\"paper\">{block.paper}</p>"
        f"<h2>What it computes</h2><p>{block.computes}</p>"
        f'<h2>Cost</h2><p class="formula">{block.cost}</p>'
        "<h2>Worked example</h2>"
        + table(header, examples, numeric_from=1)
        + (f"<p>{ratio}</p>" if ratio else "")
        + (f'<p class="note">{block.example_note}</p>' if block.example_note else "")
        + f'<p class="note">Counted by cnnzoo.summary on the real modules: {COUNTING.split(",", 1)[0]}.</p>'
        + f'<h2>Nets that use it</h2><p class="users">{users}</p>'
        + '<p class="note">Found in the models\' module trees.</p>'
    )
    return page(block.title, body, "../")
