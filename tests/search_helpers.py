"""What tests/test_search.py hands to processes it starts: trial functions a spawned worker can import,
and ``cnnzoo search`` as a script (``python tests/search_helpers.py search ...``).

Nothing here imports torch at import time: a spawned worker that runs :func:`scripted_trial`
starts in a fraction of a second.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: trial numbers whose worker process dies on every attempt / on the first attempt only
ALWAYS_DIES = 2
DIES_ONCE = 3


def scripted_trial(job) -> dict:
    """A trial that trains nothing: its reward is a function of its number, its worker dies on cue.

    Trial :data:`ALWAYS_DIES` kills its process every time; trial :data:`DIES_ONCE` kills it on
    the first attempt (a marker file in the search directory remembers it) and succeeds when run
    again.
    """
    from cnnzoo.search.trial import worker_name

    search_dir = Path(job.out).parent.parent
    if job.number == ALWAYS_DIES:
        os._exit(1)
    if job.number == DIES_ONCE:
        marker = search_dir / f"died-once-{job.number}"
        if not marker.exists():
            marker.write_text("")
            os._exit(1)
    return {"trial": job.number, "status": "ok", "val_top1": 0.1 * job.number, "seconds": 0.0,
            "worker": worker_name(), "error": ""}  # fmt: skip


def cli_main(argv: list[str]) -> int:
    """``cnnzoo.cli.main`` (also as this file's ``__main__``, one torch thread, for the SIGKILL test's subprocess)."""
    from cnnzoo import cli

    return cli.main(argv)


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    raise SystemExit(cli_main(sys.argv[1:]))
