"""Side-by-side comparison of models: params, multiply-adds and activations (the brief's Q6)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

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
