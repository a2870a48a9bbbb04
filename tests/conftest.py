import os

import pytest
import torch

# Tests are CPU-only and single-threaded per worker (make test runs 2 workers on 2 cores);
# on a shared machine two threads per process are many times slower than one.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _one_thread_per_test():
    """Keep the pinned thread count: experiments and the engine may set their own (--threads)."""
    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    torch.set_num_threads(threads)
    yield
    torch.set_num_threads(threads)
