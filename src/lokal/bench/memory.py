"""Memory of the serving process over a run: RSS and USS of the process and its children, sampled by a
background thread with psutil.

Why both: RSS counts the model file's mmap'd pages that are resident (shared with the page cache, so it can
look bigger or smaller than what the model costs); USS is memory only this process tree holds, and the
better figure for "what does serving cost". USS needs `memory_full_info()` (on Linux `/proc/PID/smaps`, which
another user's process does not let us read): where it is refused, samples carry RSS only. Children count
because servers put the model in them (Ollama's runner, vLLM's engine core).

Every sample carries the index of the load level running at the time (`mark_level`), and its time in seconds
from a `time.perf_counter()` reading `t0` shared with the load runner, so the timeline lines up with the load.
A thread (not a process) is enough at the default 0.1 s: psutil's reads release the GIL for their I/O.

Two rates, because sampling costs the machine it measures. RSS (`/proc/PID/statm`, about 0.03 ms) is read every
`interval_s`; USS and the list of children are read at most every `uss_interval_s` (1 s), samples in between
carry `uss_bytes=None`. USS means walking the server's page tables (`/proc/PID/smaps_rollup`: 1.5 ms for the
bundled model's server on one 2-core machine, 10 ms on a KVM guest with the same figures otherwise) and the
children list means reading every process's `/proc/PID/stat` (0.5-2.5 ms); done every 0.1 s, the two slowed
the server's decoding by about 6 % on a 2-core machine (issue 16, docs/measure.md), because each wake-up takes a
core from one of llama.cpp's threads, which wait for each other at every step. Since that cost depends on the
machine, the slow reads are spaced by what they cost: each is timed (this thread's CPU time, kernel included)
and the next waits until they stay within `SLOW_READ_BUDGET` of one core (0.5 %), so 10 ms reads come every 2 s.
The timeline records the interval they really had.
"""

from __future__ import annotations

import threading
import time

import psutil

from lokal.bench.result import MemorySample, MemoryTimeline
from lokal.errors import LokalError

#: The share of one core the USS and children reads may take (they are spaced out to stay within it).
SLOW_READ_BUDGET = 0.005


class ProcessNotFound(LokalError, LookupError):
    """No process with the pid to sample (`--pid` wrong, or the server already exited)."""


class MemorySampler:
    """`sampler = MemorySampler(pid).start(t0)`, `sampler.mark_level(i)` as levels begin, `sampler.stop()`."""

    def __init__(
        self, pid: int, interval_s: float = 0.1, include_children: bool = True, uss_interval_s: float = 1.0
    ) -> None:
        if interval_s <= 0 or uss_interval_s <= 0:
            raise ValueError(f"intervals must be > 0, got {interval_s} and {uss_interval_s}")
        try:
            self._process = psutil.Process(pid)
        except psutil.NoSuchProcess:
            raise ProcessNotFound(f"no process with pid {pid} to sample memory from") from None
        except psutil.AccessDenied:
            raise ProcessNotFound(f"not allowed to read process {pid}") from None
        self.pid = pid
        self.interval_s = interval_s
        self.include_children = include_children
        self.uss_interval_s = uss_interval_s
        self._slow_due = 0.0  # perf_counter time of the next USS and children read
        self._children: list[psutil.Process] = []
        self.t0: float | None = None
        #: Why sampling ended before `stop()` (the process exited), else None.
        self.ended: str | None = None
        self._level: int | None = None
        self._uss_allowed = True
        self._samples: list[MemorySample] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- control ----------------------------------------------------------------------------------
    def start(self, t0: float | None = None) -> MemorySampler:
        """Take a first sample now, then one every `interval_s`. `t0` (perf_counter) is time zero."""
        if self._thread is not None:
            raise RuntimeError("this sampler was already started")
        self.t0 = time.perf_counter() if t0 is None else t0
        self._keep(self.sample())
        self._thread = threading.Thread(target=self._run, name=f"lokal-memory-{self.pid}", daemon=True)
        self._thread.start()
        return self

    def mark_level(self, index: int | None) -> None:
        """Samples from now on belong to load level `index` (None: between levels)."""
        self._level = index

    def stop(self) -> MemoryTimeline:
        """Stop sampling (with one last sample) and return the timeline."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            if self.ended is None:
                self._keep(self.sample())
        return MemoryTimeline(
            pid=self.pid,
            include_children=self.include_children,
            interval_s=self.interval_s,
            uss_interval_s=self._uss_every() if self._uss_allowed else None,
            samples=list(self._samples),
        )

    def _uss_every(self) -> float:
        """The mean interval between USS readings so far (at least `uss_interval_s` apart, more if they cost)."""
        times = [s.t_s for s in self._samples if s.uss_bytes is not None]
        if len(times) < 2:
            return self.uss_interval_s
        return round(max(self.uss_interval_s, (times[-1] - times[0]) / (len(times) - 1)), 1)

    @property
    def samples(self) -> list[MemorySample]:
        """The samples so far (a copy; safe to read while sampling runs)."""
        return list(self._samples)

    def __enter__(self) -> MemorySampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- sampling ---------------------------------------------------------------------------------
    def sample(self) -> MemorySample | None:
        """One reading of the process tree now (USS and a fresh list of children only when they are due);
        None when the process is gone."""
        now = time.perf_counter()
        slow = now >= self._slow_due
        if slow:
            cpu0 = time.thread_time()
            if self.include_children:
                try:
                    self._children = self._process.children(recursive=True)
                except psutil.NoSuchProcess:
                    return None
        processes = [self._process, *self._children]
        rss = 0
        uss: int | None = 0 if self._uss_allowed and slow else None
        for process in processes:
            try:
                # A killed process is a zombie until reaped, and its /proc memory figures then read as 0 (or
                # shrink while the kernel frees them) without an error: that is an exit, not a reading.
                if process.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                    raise psutil.ZombieProcess(process.pid)
                r, u = self._read(process, with_uss=uss is not None)
                if r == 0:  # its memory already released: exiting, not yet a zombie
                    raise psutil.ZombieProcess(process.pid)
            except psutil.NoSuchProcess:  # ZombieProcess included
                if process is self._process:
                    return None
                continue  # a child that exited between listing and reading
            except psutil.AccessDenied:
                continue  # a child we may not read at all (another user's helper)
            rss += r
            uss = None if uss is None or u is None else uss + u
        if slow:  # the next slow read waits long enough for these reads to stay within their CPU budget
            self._slow_due = now + max(self.uss_interval_s, (time.thread_time() - cpu0) / SLOW_READ_BUDGET)
        t0 = self.t0 if self.t0 is not None else now
        return MemorySample(t_s=now - t0, rss_bytes=rss, uss_bytes=uss, level=self._level)

    def _read(self, process: psutil.Process, *, with_uss: bool) -> tuple[int, int | None]:
        if with_uss and self._uss_allowed:
            try:
                info = process.memory_full_info()
                return info.rss, info.uss
            except psutil.AccessDenied:
                self._uss_allowed = False  # RSS only from now on, for a consistent timeline
        return process.memory_info().rss, None

    def _keep(self, sample: MemorySample | None) -> bool:
        if sample is None:
            if self.ended is None:
                self.ended = f"process {self.pid} exited during the run; memory samples stop there"
            return False
        self._samples.append(sample)
        return True

    def _run(self) -> None:
        # On a fixed grid, so slow reads do not stretch the interval; a read slower than the interval skips
        # ahead instead of sampling back to back.
        deadline = time.perf_counter()
        while True:
            deadline += self.interval_s
            now = time.perf_counter()
            if deadline < now:
                deadline = now + self.interval_s
            if self._stop.wait(deadline - now):
                return
            if not self._keep(self.sample()):
                return
