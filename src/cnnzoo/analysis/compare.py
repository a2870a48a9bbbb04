"""Side-by-side comparison of models: params, multiply-adds and activations (the brief's Q6)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from cnnzoo.analysis.summary import Summary, summary


@dataclass(frozen=True)
class Comparison:
    summaries: list[Summary]

    def to_table(self) -> str:
        base = self.summaries[0]
        header = ["model", "input", "params", "MACs", "activations", "params vs first", "MACs vs first"]
        body = []
        for s in self.summaries:
            body.append([
                s.model_name,
                "x".join(map(str, s.input_size)),
                f"{s.total_params / 1e6:.2f}M",
                f"{s.total_macs / 1e9:.3f}G",
                f"{s.activation_count / 1e6:.2f}M",
                _relative(s.total_params, base.total_params, "M", 1e6),
                _relative(s.total_macs, base.total_macs, "G", 1e9),
            ])
        widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
        fmt = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
        rule = "-" * len(fmt(header))
        lines = [rule, fmt(header), rule, *map(fmt, body), rule]
        lines.append(f"differences and ratios are against {base.model_name}; MACs are conv + linear multiply-adds")
        return "\n".join(lines)


def _relative(value: int, base: int, unit: str, scale: float) -> str:
    ratio = f"x{value / base:.2f}" if base else "n/a"
    return f"{(value - base) / scale:+.2f}{unit} ({ratio})"


def compare(names: list[str], input_size=None) -> Comparison:
    """Summaries of registered models (or trained run directories) at their default inputs (or one given input)."""
    from cnnzoo.train.runs import model_or_run

    summaries = []
    for name in names:
        model, default_size, _ = model_or_run(name)
        result = summary(model, input_size or default_size)
        if not isinstance(model, str):  # a run directory: say which
            result = dataclasses.replace(result, model_name=f"{result.model_name} ({name})")
        summaries.append(result)
    return Comparison(summaries)


# ------------------------------------------------------------------------------------------
# Canziani et al. 2016, Figure 2: accuracy against operations, bubble size the parameters
# ------------------------------------------------------------------------------------------

#: marker colour per evaluation protocol: a chart of reported figures must show they are not alike
_EVALUATION_COLOURS = {"single crop": "tab:blue", "10 crops": "tab:orange", "dense": "tab:green",
                       "not stated": "tab:gray"}  # fmt: skip


def plot_accuracy_chart(comparison: Comparison, names: list[str], path) -> tuple[Path, list[str]]:
    """Draw Canziani et al.'s chart for the registered models of ``comparison`` into the PNG ``path``.

    x: multiply-adds per image at each model's own input (log scale); y: ImageNet top-1 as the
    model's paper reports it (:mod:`cnnzoo.reported_accuracy`); bubble area: parameters; colour:
    how the paper evaluated (one crop, ten crops, dense).  ``names`` are the command's arguments,
    one per summary.  Returns the file and the models left out (no top-1 in their paper, or a run
    directory: its weights are not the paper's).
    """
    from cnnzoo.experiments._runs import figure
    from cnnzoo.registry import list_models, model_info

    registered = set(list_models())
    points, left_out = [], []
    for name, s in zip(names, comparison.summaries):
        reported = model_info(name).reported if name in registered else None
        if reported is None or reported.top1 is None:
            left_out.append(name)
            continue
        points.append((name, s.total_macs / 1e9, reported.top1, s.total_params / 1e6, reported.evaluation))
    with figure(Path(path), figsize=(9, 6)) as (fig, ax):
        for evaluation, colour in _EVALUATION_COLOURS.items():
            chosen = [p for p in points if p[4] == evaluation]
            if chosen:
                ax.scatter([p[1] for p in chosen], [p[2] for p in chosen], s=[12 * p[3] + 10 for p in chosen],
                           color=colour, alpha=0.45, edgecolors="black", linewidths=0.5, label=evaluation)  # fmt: skip
        for name, macs, top1, _, _ in points:
            ax.annotate(name, (macs, top1), fontsize=7, ha="center", va="center")
        ax.set_xscale("log")
        ax.set_xlabel("multiply-adds per image (G, log scale; each model at its own input size)")
        ax.set_ylabel("ImageNet top-1 accuracy (%), as each paper reports it")
        ax.set_title("Accuracy against operations, bubble area = parameters (after Canziani et al. 2016, Fig. 2)",
                     fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        if points:
            legend = ax.legend(title="the paper's evaluation", fontsize=8, loc="lower right")
            for handle in legend.legend_handles:  # one marker size in the legend: the colour is the key
                handle.set_sizes([40])
        if left_out:
            fig.text(0.01, 0.005, "not shown (no ImageNet top-1 in the paper): " + ", ".join(left_out), fontsize=7)
    return Path(path), left_out
