"""Where trials run: in this process, in a local pool of worker processes, or on a Ray cluster.

All three have the same small interface (:class:`Workers`): ``free`` slots, ``submit(job)``,
``wait()`` for at least one :class:`Finished` trial, ``close()``.  The search loop
(:mod:`cnnzoo.search.runner`) does not know which one it drives.

* :class:`InProcessWorkers` (``workers=0``): the trial runs in the calling process; no isolation
  (a crash ends the search), for debugging and quick tests.
* :class:`LocalWorkers` (``--workers W``): W executors of one spawned process each
  (:class:`concurrent.futures.ProcessPoolExecutor`, spawn context).  One executor per slot rather
  than one executor of W processes: when a process dies, a ``ProcessPoolExecutor`` fails *every*
  pending future with ``BrokenProcessPool``, so a pool of W could not tell which trial killed it;
  with one process per executor the death is the trial's that ran there, only that slot is
  recreated, and the other trials keep running.
* :class:`RayWorkers` (``--ray ADDRESS``): trials are Ray tasks (``num_cpus`` = the trial's
  threads, no automatic retries: the search retries a dead worker's trial itself, once) on an
  existing cluster; ``ray.wait`` returns them as they finish.  Ray is imported only here, inside
  this class.  Every node must see the search directory at the same path (a shared filesystem)
  and have cnnzoo installed.

A worker process set up by :func:`_init_worker` pins its thread budget before torch is imported
and exits by itself when the search process that started it dies (``kill -9`` of the search
must not leave orphans writing into trial folders that ``--resume`` re-runs).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from cnnzoo.errors import ConfigError


@dataclass
class Finished:
    """A trial that came back: its record, or why its worker died (``record`` is then None)."""

    job: Any
    record: dict[str, Any] | None = None
    died: str | None = None


class Workers:
    """The interface of the three kinds of workers."""

    slots: int = 1
    #: CPU threads of one trial (None: leave torch's setting alone)
    threads: int | None = None

    def __init__(self) -> None:
        self.running: dict[Any, Any] = {}  # handle -> job

    @property
    def free(self) -> int:
        return self.slots - len(self.running)

    @property
    def busy(self) -> bool:
        return bool(self.running)

    def submit(self, job) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def wait(self) -> list[Finished]:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass

    def describe(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError


# ------------------------------------------------------------------------------------------
# in this process
# ------------------------------------------------------------------------------------------


class InProcessWorkers(Workers):
    """``workers=0``: each trial runs in this process when it is waited for."""

    slots = 1

    def __init__(self, trial_fn: Callable, threads: int | None) -> None:
        super().__init__()
        self.trial_fn = trial_fn
        self.threads = threads  # None: torch's setting in this process stays

    def submit(self, job) -> None:
        self.running[job.number] = job

    def wait(self) -> list[Finished]:
        number, job = next(iter(self.running.items()))
        try:
            record = self.trial_fn(job)
        finally:
            del self.running[number]
        if record.get("status") == "interrupted":
            # Ctrl-C reached the engine in this very process (it stops the run cleanly): the search stops too
            raise KeyboardInterrupt
        return [Finished(job, record=record)]

    def describe(self) -> str:
        return "in this process"


# ------------------------------------------------------------------------------------------
# a local pool of worker processes
# ------------------------------------------------------------------------------------------


def _init_worker(threads: int, parent_pid: int) -> None:
    """Set up a spawned worker: its thread budget, and an exit when the search process is gone."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)  # read by torch when it is first imported, which is after this

    def watch_parent() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:  # re-parented: the search was killed
                os._exit(1)

    threading.Thread(target=watch_parent, name="cnnzoo-watch-parent", daemon=True).start()


class LocalWorkers(Workers):
    """``--workers W``: W single-process executors (see the module docstring for why not one of W)."""

    def __init__(self, slots: int, trial_fn: Callable, threads_per_trial: int) -> None:
        super().__init__()
        self.slots = slots
        self.trial_fn = trial_fn
        self.threads = threads_per_trial
        self.idle: list[Any] = []  # executors with nothing running

    def _executor(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if self.idle:
            return self.idle.pop()
        return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(self.threads, os.getpid()))  # fmt: skip

    def submit(self, job) -> None:
        executor = self._executor()
        future = executor.submit(self.trial_fn, job)
        self.running[future] = (job, executor)

    def wait(self) -> list[Finished]:
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as wait_futures
        from concurrent.futures.process import BrokenProcessPool

        done, _ = wait_futures(list(self.running), return_when=FIRST_COMPLETED)
        finished = []
        for future in sorted(done, key=lambda f: self.running[f][0].number):
            job, executor = self.running.pop(future)
            try:
                finished.append(Finished(job, record=future.result()))
                self.idle.append(executor)
            except BrokenProcessPool:
                # the process died (killed, out of memory, a crash in native code): a new one takes the slot
                _stop(executor)
                finished.append(Finished(job, died=f"its worker process died ({_exit_status(executor)})"))
        return finished

    def close(self) -> None:
        for _, executor in self.running.values():
            _stop(executor)
        for executor in self.idle:
            executor.shutdown(wait=True)
        self.running.clear()
        self.idle.clear()

    def describe(self) -> str:
        return f"{self.slots} local worker process{'es' if self.slots != 1 else ''}, {self.threads} thread" + \
            ("s" if self.threads != 1 else "") + " each"  # fmt: skip


def _processes(executor) -> list:
    # ProcessPoolExecutor has no public way to reach or end its processes before Python 3.14
    # (terminate_workers); its _processes dict (pid -> Process) is the only handle
    return list((getattr(executor, "_processes", None) or {}).values())


def _exit_status(executor) -> str:
    codes = [p.exitcode for p in _processes(executor) if p.exitcode is not None]
    if not codes:
        return "exit status unknown"
    code = codes[0]
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"


def _stop(executor) -> None:
    """End an executor now: its running trial (if any) is abandoned, its process terminated."""
    for process in _processes(executor):
        if process.is_alive():
            process.terminate()
    executor.shutdown(wait=False, cancel_futures=True)
    for process in _processes(executor):
        process.join(timeout=5)


# ------------------------------------------------------------------------------------------
# Ray
# ------------------------------------------------------------------------------------------


def ray_host_port(address: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``ray://HOST:PORT`` -> (host, port); anything else is a one-line error."""
    text = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")  # an IPv6 address in brackets
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--ray {address}: give the cluster's address as HOST:PORT (the head node's, "
                          "e.g. 127.0.0.1:6379) or ray://HOST:PORT")  # fmt: skip
    return host, int(port)


def check_ray_answers(address: str, timeout: float = 3.0) -> None:
    """A TCP connection to the cluster's address, before any work: a dead address is one line, not a hang."""
    host, port = ray_host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError:
        raise ConfigError(f"the Ray cluster at {address} does not answer") from None


class RayWorkers(Workers):
    """``--ray ADDRESS``: trials as Ray tasks on an existing cluster."""

    def __init__(self, address: str, trial_fn: Callable, slots: int | None, threads: int | None) -> None:
        super().__init__()
        check_ray_answers(address)
        try:
            import ray
        except ImportError:
            raise ConfigError("--ray needs the ray package (pip install 'ray[default]')") from None
        self.ray = ray
        self.address = address
        try:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR", ignore_reinit_error=True)
        except Exception as exc:  # a version mismatch, a refused client, ...
            raise ConfigError(f"cannot connect to the Ray cluster at {address}: {' '.join(str(exc).split())}") from None
        cpus = int(ray.cluster_resources().get("CPU", 1)) or 1
        total = threads or cpus
        self.slots = slots or max(1, total)
        self.threads = max(1, total // self.slots)
        # no automatic retries: the search retries a trial whose worker died once, itself, and records it
        self.remote = ray.remote(num_cpus=self.threads, max_retries=0)(trial_fn)

    def submit(self, job) -> None:
        self.running[self.remote.remote(job)] = job

    def wait(self) -> list[Finished]:
        ray = self.ray
        done, _ = ray.wait(list(self.running), num_returns=1)
        finished = []
        for ref in done:
            job = self.running.pop(ref)
            try:
                finished.append(Finished(job, record=ray.get(ref)))
            except ray.exceptions.RayTaskError as exc:  # the trial function raised (run_trial records its errors)
                raise exc.as_instanceof_cause() from None
            except ray.exceptions.RayError as exc:  # the worker or its node died
                finished.append(Finished(job, died=f"its Ray worker died ({type(exc).__name__})"))
        return finished

    def close(self) -> None:
        for ref in list(self.running):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # already finished or gone
                pass
        self.running.clear()
        self.ray.shutdown()

    def describe(self) -> str:
        return f"the Ray cluster at {self.address}, {self.slots} trials at once, {self.threads} CPU" + \
            ("s" if self.threads != 1 else "") + " each"  # fmt: skip


def open_workers(workers: int | None, threads: int | None, ray_address: str | None, trial_fn: Callable) -> Workers:
    """The workers a search asked for (see the module docstring); a bad Ray address fails here, before any work."""
    if ray_address:
        return RayWorkers(ray_address, trial_fn, workers, threads)
    if workers == 0:
        return InProcessWorkers(trial_fn, threads)
    slots = workers or 1
    total = threads or os.cpu_count() or 1
    return LocalWorkers(slots, trial_fn, max(1, total // slots))
