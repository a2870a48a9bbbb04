"""The atlas' drawings, written as SVG text: the timeline with its lineage, the chart, a model's diagram.

Drawn by hand rather than with graphviz or torchview: the shapes are simple (boxes in rows
and columns, a scatter plot), the output must work from ``file://`` with nothing to load,
and a hand-written SVG stays small for nets of thousands of layers.  Torch-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

#: one colour per family, assigned in timeline order
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
           "#e6550d", "#31a354", "#756bb1", "#636363")  # fmt: skip


def human(value: float) -> str:
    """1234567 -> "1.23M" (the summary's units)."""
    if value == 0:
        return "0"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:g}"


def tick_label(value: float) -> str:
    """1e9 -> "1G", 1e5 -> "100K": round powers of ten."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:g}{unit}"
    return f"{value:g}"


def _text(x: float, y: float, text: str, cls: str = "", anchor: str = "start") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{klass}>{escape(text)}</text>'


# --------------------------------------------------------------------------- the timeline
@dataclass
class TimelineNode:
    """One paper on the timeline: the model whose page it links to, its family and year."""

    label: str  # a model name
    family: str
    year: int
    href: str
    title: str  # the paper's title (the tooltip)
    x: float = 0.0
    y: float = 0.0


@dataclass
class Edge:
    source: str  # node labels (model names)
    target: str
    what: str


NODE_W, NODE_H = 126, 24
LABEL_W, COLUMN_W, SLOT_H = 120, 138, 32


def timeline_svg(nodes: list[TimelineNode], edges: list[Edge], colours: dict[str, str]) -> str:
    """Families as rows (ordered by their first year), years as columns, lineage as arrows."""
    years = sorted({n.year for n in nodes})
    families = sorted({n.family for n in nodes}, key=lambda f: (min(n.year for n in nodes if n.family == f), f))
    column = {year: LABEL_W + 10 + i * COLUMN_W for i, year in enumerate(years)}
    parts: list[str] = []
    y = 34
    for index, family in enumerate(families):
        members = sorted((n for n in nodes if n.family == family), key=lambda n: (n.year, n.label))
        slots: dict[int, int] = {}
        for node in members:
            node.x = column[node.year]
            node.y = y + 4 + slots.get(node.year, 0) * SLOT_H
            slots[node.year] = slots.get(node.year, 0) + 1
        height = max(slots.values()) * SLOT_H + 8
        if index % 2 == 0:
            parts.append(f'<rect class="band" x="0" y="{y}" width="100%" height="{height}"/>')
        parts.append(f'<g data-family="{escape(family)}" class="row-label">'
                     + _text(8, y + 20, family, "family") + "</g>")  # fmt: skip
        y += height
    width = LABEL_W + 10 + len(years) * COLUMN_W
    head = [_text(column[year] + NODE_W / 2, 22, str(year), "year", "middle") for year in years]
    by_label = {n.label: n for n in nodes}
    arrows = []
    for edge in edges:
        a, b = by_label.get(edge.source), by_label.get(edge.target)
        if a is None or b is None:
            continue
        x1, y1 = a.x + NODE_W, a.y + NODE_H / 2
        x2, y2 = b.x, b.y + NODE_H / 2
        if x2 <= x1:  # same year: leave from the bottom, arrive on the left
            x1, y1 = a.x + NODE_W / 2, a.y + NODE_H
        bend = max(30.0, (x2 - x1) / 2)
        arrows.append(
            f'<path class="edge" data-source="{escape(a.family)}" data-target="{escape(b.family)}" '
            f'd="M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}" '
            f'marker-end="url(#arrow)"><title>{escape(edge.source)} &#8594; {escape(edge.target)}: '
            f"{escape(edge.what)}</title></path>"
        )
    boxes = []
    for n in nodes:
        colour = colours.get(n.family, "#555")
        boxes.append(
            f'<a href="{escape(n.href)}" class="node" data-family="{escape(n.family)}" data-year="{n.year}">'
            f"<title>{escape(n.title)} ({n.year})</title>"
            f'<rect x="{n.x:.1f}" y="{n.y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="5" '
            f'style="stroke:{colour}"/>'
            f'<rect x="{n.x:.1f}" y="{n.y:.1f}" width="6" height="{NODE_H}" rx="2" style="fill:{colour}"/>'
            + _text(n.x + 12, n.y + 16, n.label)
            + "</a>"
        )
    marker = ('<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
              'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>')  # fmt: skip
    return (f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y + 10}" '
            f'viewBox="0 0 {width} {y + 10}" role="img" aria-label="timeline of the networks and their lineage">'
            + marker + "".join(parts + head + arrows + boxes) + "</svg>")  # fmt: skip


# --------------------------------------------------------------------------- the chart
@dataclass
class Point:
    name: str
    family: str
    year: int
    x: float  # multiply-adds
    y: float
    href: str
    labelled: bool = False  # write the name beside the dot


def _log_ticks(low: float, high: float) -> list[float]:
    return [10.0**e for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)]


def chart_svg(points: list[Point], colours: dict[str, str], y_label: str, y_log: bool) -> str:
    """A scatter of ``y`` against multiply-adds (log scale), one dot per model, linked to its page."""
    points = [p for p in points if p.x > 0 and p.y > 0]
    width, height, left, right, top, bottom = 780, 420, 70, 30, 16, 46
    if not points:
        return ""
    xs = _log_ticks(min(p.x for p in points), max(p.x for p in points))
    x_lo, x_hi = math.log10(xs[0]), math.log10(xs[-1])
    if y_log:
        ys = _log_ticks(min(p.y for p in points), max(p.y for p in points))
        y_lo, y_hi = math.log10(ys[0]), math.log10(ys[-1])
        fy = math.log10
    else:
        lo, hi = math.floor(min(p.y for p in points) / 5) * 5, math.ceil(max(p.y for p in points) / 5) * 5
        ys = [float(v) for v in range(int(lo), int(hi) + 1, 5)]
        y_lo, y_hi, fy = lo, max(hi, lo + 5), float

    def px(value: float) -> float:
        return left + (math.log10(value) - x_lo) / (x_hi - x_lo or 1) * (width - left - right)

    def py(value: float) -> float:
        return height - bottom - (fy(value) - y_lo) / (y_hi - y_lo or 1) * (height - top - bottom)

    parts = [f'<rect class="plot" x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}"/>']
    for tick in xs:
        parts.append(f'<line class="grid" x1="{px(tick):.1f}" x2="{px(tick):.1f}" y1="{top}" y2="{height - bottom}"/>')
        parts.append(_text(px(tick), height - bottom + 16, tick_label(tick), "tick", "middle"))
    for tick in ys:
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{py(tick):.1f}" y2="{py(tick):.1f}"/>')
        parts.append(_text(left - 6, py(tick) + 4, tick_label(tick) if y_log else f"{tick:g}%", "tick", "end"))
    parts.append(_text((left + width - right) / 2, height - 8, "multiply-adds per image (log scale)", "axis", "middle"))
    parts.append(f'<text class="axis" transform="translate(16,{(top + height - bottom) / 2:.0f}) rotate(-90)" '
                 f'text-anchor="middle">{escape(y_label)}</text>')  # fmt: skip
    placed: list[tuple[float, float, float, float]] = []  # label boxes so far: no label over another

    def label(p: Point) -> str:
        width, x, y = 6.2 * len(p.name), px(p.x), py(p.y)
        for left, anchor in ((x + 7, "start"), (x - 7 - width, "end")):
            box = (left, y - 8, left + width, y + 5)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                placed.append(box)
                return _text(x + 7 if anchor == "start" else x - 7, y + 4, p.name, "label", anchor)
        return ""

    for p in sorted(points, key=lambda p: -p.y):
        colour = colours.get(p.family, "#555")
        parts.append(
            f'<a href="{escape(p.href)}" class="dot" data-family="{escape(p.family)}" data-year="{p.year}">'
            f"<title>{escape(p.name)}: {human(p.x)} multiply-adds, {escape(y_label)} {human(p.y) if y_log else f'{p.y:.1f}%'}</title>"
            f'<circle cx="{px(p.x):.1f}" cy="{py(p.y):.1f}" r="5" style="fill:{colour}"/>'
            + (label(p) if p.labelled else "") + "</a>"
        )
    return (f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(y_label)} against multiply-adds">'
            + "".join(parts) + "</svg>")  # fmt: skip


# --------------------------------------------------------------------------- a model's diagram
@dataclass
class TreeNode:
    name: str
    type: str
    row: dict | None = None  # the layer's row, or a block's own-ops row
    children: list["TreeNode"] = field(default_factory=list)
    params: int = 0
    macs: int = 0
    output: str = ""


def block_tree(rows: list[dict], containers: dict[str, str]) -> list[TreeNode]:
    """The module tree of a model from its summary rows (call order) and its container modules."""
    root = TreeNode("", "")
    nodes: dict[str, TreeNode] = {"": root}

    def container(name: str) -> TreeNode:
        if name not in nodes:
            parent = container(name.rpartition(".")[0] if "." in name else "")
            nodes[name] = TreeNode(name, containers[name])
            parent.children.append(nodes[name])
        return nodes[name]

    for row in rows:
        if row["name"] == "input":
            continue
        name = row["name"]
        if name in containers:
            container(name).row = row
        else:
            parent = container(name.rpartition(".")[0]) if "." in name else root
            parent.children.append(TreeNode(name, row["type"], row))
    _fold(root)
    return root.children


def _fold(node: TreeNode) -> None:
    node.params = node.row["params"] if node.row else 0
    node.macs = node.row["macs"] if node.row else 0
    node.output = node.row["output_shape"] if node.row else ""
    for child in node.children:
        _fold(child)
        node.params += child.params
        node.macs += child.macs
    if node.children and not (node.row and node.row["output_shape"]):
        node.output = node.children[-1].output


def _kind(type_name: str) -> str:
    name = type_name.lower()
    for kind, words in (("conv", ("conv",)), ("pool", ("pool",)), ("norm", ("norm", "lrn")),
                        ("act", ("relu", "tanh", "sigmoid", "softmax", "act")), ("fc", ("linear",)),
                        ("drop", ("dropout",))):  # fmt: skip
        if any(w in name for w in words):
            return kind
    return "other"


BOX_W, BOX_H = 640, 30


def _box(node: TreeNode, total_macs: int, container: bool) -> str:
    share = node.macs / total_macs if total_macs else 0.0
    kind = "block" if container else _kind(node.type)
    detail = node.type if container else " ".join(x for x in (node.type, (node.row or {}).get("kernel", "")) if x)
    label = node.name.rpartition(".")[2]
    right = " · ".join(x for x in (node.output, f"{human(node.params)} params" if node.params else "",
                                   f"{human(node.macs)} MACs" if node.macs else "") if x)  # fmt: skip
    return (f'<svg class="box {kind}" xmlns="http://www.w3.org/2000/svg" width="{BOX_W}" height="{BOX_H}" '
            f'viewBox="0 0 {BOX_W} {BOX_H}"><title>{escape(node.name)}: {escape(node.type)}</title>'
            f'<rect class="frame" x="0.5" y="0.5" width="{BOX_W - 1}" height="{BOX_H - 1}" rx="4"/>'
            f'<rect class="cost" x="1" y="{BOX_H - 5}" width="{max(share * (BOX_W - 2), 0):.1f}" height="4"/>'
            + (_text(8, 19, "\u25b8", "closed") + _text(8, 19, "\u25be", "opened") if container else "")
            + _text(22 if container else 8, 19, label, "name") + _text(160, 19, detail, "type") + _text(BOX_W - 8, 19, right, "shape", "end")
            + "</svg>")  # fmt: skip


def diagram_html(nodes: list[TreeNode], total_macs: int, open_levels: int = 1) -> str:
    """Blocks as boxes (SVG), each block a ``<details>`` that opens onto its layers.

    The thin bar under a box is its share of the model's multiply-adds.
    """

    def render(node: TreeNode, level: int) -> str:
        if not node.children:
            return f'<div class="layer">{_box(node, total_macs, False)}</div>'
        inner = "".join(render(child, level + 1) for child in node.children)
        opened = " open" if level < open_levels else ""
        return (f'<details class="blk"{opened}><summary>{_box(node, total_macs, True)}</summary>'
                f'<div class="children">{inner}</div></details>')  # fmt: skip

    return "".join(render(node, 0) for node in nodes)
