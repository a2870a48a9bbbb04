"""``python -m cnnzoo.pretrained``: the table of trained weights, without importing torch."""

from __future__ import annotations

import sys

from cnnzoo.pretrained.table import read_table


def format_table(entries: dict) -> str:
    """One row per tag: shipped or not, parameters, size, test top-1, data, machine and date, the command."""
    header = ("tag", "weights", "params", "test top-1", "data", "trained")
    rows = []
    for tag, entry in sorted(entries.items()):
        size = f"{entry['bytes'] / 1e6:.2f} MB {entry['dtype']}"
        rows.append((tag, size if entry.get("file") else f"not shipped ({size})", f"{entry['params']:,}",
                     f"{entry['test_top1']:.2f}%", entry["run"]["data"],
                     f"{entry.get('date')}, {entry.get('machine')}"))  # fmt: skip
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines += [f"  {tag}: {entry['command']}" for tag, entry in sorted(entries.items())]
    return "\n".join(lines)


def main() -> int:
    entries = read_table()
    print(format_table(entries) if entries else "no pretrained weights in the table yet")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
