"""The memory sampler against real processes (this test process and a child it starts), and the platform facts
saved beside the memory figures. No test asserts a time: waits poll for a number of samples instead."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import psutil
import pytest

from lokal.bench import memory
from lokal.bench.memory import MemorySampler, ProcessNotFound
from lokal.bench.platform import cpu_from_cpuinfo, platform_info

#: Only guards against hanging forever; the tests never depend on how long anything takes.
DEADLINE_S = 30.0


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.005)


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    """A Python child that allocates 32 MiB and prints a line once it holds it."""
    code = "import sys, time; b = b'x' * (32 * 1024 * 1024); print('ready', flush=True); time.sleep(60)"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    yield process
    process.kill()
    process.wait()


def test_samples_this_process_and_tags_levels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "SLOW_READ_BUDGET", float("inf"))  # USS in every sample, whatever it costs
    sampler = MemorySampler(os.getpid(), interval_s=0.005, uss_interval_s=1e-9)
    t0 = time.perf_counter()
    sampler.start(t0)
    sampler.mark_level(0)
    wait_until(lambda: sum(s.level == 0 for s in sampler.samples) >= 3, "3 samples in level 0")
    sampler.mark_level(1)
    wait_until(lambda: sum(s.level == 1 for s in sampler.samples) >= 3, "3 samples in level 1")
    timeline = sampler.stop()

    assert (timeline.pid, timeline.interval_s, timeline.include_children) == (os.getpid(), 0.005, True)
    samples = timeline.samples
    assert samples[0].level is None  # the sample taken at start(), before any level began
    levels = [s.level for s in samples[1:]]
    assert levels == sorted(levels, key=lambda v: -1 if v is None else v)  # None, then 0s, then 1s: never back
    assert {0, 1} <= set(levels)
    assert samples[-1].level == 1  # the final sample at stop()
    times = [s.t_s for s in samples]
    assert times == sorted(times) and times[0] >= 0.0  # seconds from t0, in order
    own = psutil.Process().memory_info().rss
    for s in samples:
        assert s.rss_bytes > 0
        assert s.uss_bytes is not None and 0 < s.uss_bytes <= s.rss_bytes  # our own process: USS is readable
        assert s.rss_bytes > own / 4  # the same order as psutil's own reading, not a unit slip
    assert timeline.peak_rss_bytes == max(s.rss_bytes for s in samples)
    assert sampler.ended is None


def test_children_are_summed(child: subprocess.Popen[bytes]) -> None:
    child_rss = psutil.Process(child.pid).memory_info().rss
    assert child_rss > 32 * 1024 * 1024  # it holds its 32 MiB
    with_children = MemorySampler(os.getpid(), include_children=True).sample()
    alone = MemorySampler(os.getpid(), include_children=False).sample()
    assert with_children is not None and alone is not None
    # The difference is the child (give or take what this process allocated between the two readings).
    assert with_children.rss_bytes - alone.rss_bytes > child_rss * 0.9
    assert with_children.uss_bytes - alone.uss_bytes > 32 * 1024 * 1024 * 0.9


def test_a_process_that_exits_ends_sampling_without_an_error(child: subprocess.Popen[bytes]) -> None:
    sampler = MemorySampler(child.pid, interval_s=0.005).start()
    wait_until(lambda: len(sampler.samples) >= 2, "2 samples")
    before_kill = len(sampler.samples)
    child.kill()
    child.wait()
    wait_until(lambda: sampler.ended is not None, "the sampler to notice the exit")
    timeline = sampler.stop()
    assert len(timeline.samples) >= 2
    # Readings of the live child hold its 32 MiB; one taken while the kernel tears it down may be smaller,
    # but none reads as an empty process (a zombie's or an exiting process's 0).
    assert all(s.rss_bytes > 32 * 1024 * 1024 for s in timeline.samples[:before_kill])
    assert all(s.rss_bytes > 0 for s in timeline.samples)
    assert f"process {child.pid} exited" in sampler.ended


def test_an_unknown_pid_is_a_clear_error() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with pytest.raises(ProcessNotFound, match=f"no process with pid {gone.pid}"):
        MemorySampler(gone.pid)


def test_rss_only_where_uss_is_not_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(self: psutil.Process) -> None:
        raise psutil.AccessDenied(self.pid)

    monkeypatch.setattr(psutil.Process, "memory_full_info", denied)
    sample = MemorySampler(os.getpid()).sample()
    assert sample is not None and sample.rss_bytes > 0 and sample.uss_bytes is None


def test_bad_interval() -> None:
    with pytest.raises(ValueError, match="intervals must be > 0"):
        MemorySampler(os.getpid(), interval_s=0)
    with pytest.raises(ValueError, match="intervals must be > 0"):
        MemorySampler(os.getpid(), uss_interval_s=-1)


def test_uss_and_children_are_read_at_their_own_slower_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """RSS every sample; USS and the (costly) children list only when `uss_interval_s` has passed."""
    calls = {"memory_full_info": 0, "children": 0}
    for name in calls:
        original = getattr(psutil.Process, name)

        def counted(self: psutil.Process, *args: object, _name: str = name, _original=original, **kw: object):
            calls[_name] += 1
            return _original(self, *args, **kw)

        monkeypatch.setattr(psutil.Process, name, counted)
    sampler = MemorySampler(os.getpid(), interval_s=0.005, uss_interval_s=3600).start()
    wait_until(lambda: len(sampler.samples) >= 6, "6 samples")
    timeline = sampler.stop()
    assert timeline.uss_interval_s == 3600
    assert timeline.samples[0].uss_bytes is not None  # the first sample reads everything
    assert all(s.uss_bytes is None and s.rss_bytes > 0 for s in timeline.samples[1:])
    assert calls == {"memory_full_info": 1, "children": 1}
    assert timeline.peak_uss_bytes == timeline.samples[0].uss_bytes


def test_slow_reads_are_spaced_by_what_they_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    """A USS read that costs 20 ms of CPU waits 20 / 0.5 % = 4 s for the next (not the 1 s minimum), and the
    timeline says USS came every 4 s."""
    clock = SimpleNamespace(now=0.0, cpu=0.0)
    monkeypatch.setattr(memory, "time", SimpleNamespace(perf_counter=lambda: clock.now, thread_time=lambda: clock.cpu))
    original = psutil.Process.memory_full_info

    def costly(self: psutil.Process) -> object:
        clock.cpu += 0.020
        return original(self)

    monkeypatch.setattr(psutil.Process, "memory_full_info", costly)
    sampler = MemorySampler(os.getpid(), uss_interval_s=1.0, include_children=False)
    sampler.t0 = 0.0
    read = []
    for clock.now in (0.0, 1.0, 3.9, 4.0, 5.0, 8.0):
        sample = sampler.sample()
        assert sample is not None
        sampler._keep(sample)
        read.append(sample.uss_bytes is not None)
    assert read == [True, False, False, True, False, True]
    assert memory.SLOW_READ_BUDGET == 0.005 and sampler.stop().uss_interval_s == 4.0


# -- platform --------------------------------------------------------------------------------------------------------

X86 = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8480+
cpu MHz\t\t: 2000.000
"""

RASPBERRY_PI = """processor\t: 0
BogoMIPS\t: 108.00
CPU part\t: 0xd08

Hardware\t: BCM2835
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""

ARM_SERVER = """processor\t: 0
BogoMIPS\t: 243.75
CPU implementer\t: 0x41
CPU part\t: 0xd0c
"""


def test_cpu_model_from_cpuinfo() -> None:
    assert cpu_from_cpuinfo(X86) == "Intel(R) Xeon(R) Platinum 8480+"  # not "model : 143"
    assert cpu_from_cpuinfo(RASPBERRY_PI) == "BCM2835"
    assert cpu_from_cpuinfo("cpu\t\t: POWER9 (raw), altivec supported\n") == "POWER9 (raw), altivec supported"
    assert cpu_from_cpuinfo(ARM_SERVER) is None  # only part numbers: the caller falls back
    assert cpu_from_cpuinfo("") is None


def test_platform_info_describes_this_machine() -> None:
    info = platform_info()
    assert info.cpu and info.system and info.python == ".".join(map(str, sys.version_info[:3]))
    assert info.logical_cpus == os.cpu_count()
    assert info.memory_bytes == psutil.virtual_memory().total
