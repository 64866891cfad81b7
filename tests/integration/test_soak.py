"""The soak benchmark's short CI version: 500 short requests over both APIs against a real `lokal serve`
subprocess, 10 % of the streams leaving after their first line, then the check that every slot runs again.

It reuses `benchmarks/soak.py` (schedule, load, classification, slot check), so the test and the benchmark
cannot drift apart. It asserts only what must hold on any machine (no errors, the planned disconnects, no
leaked slot, nothing hung); latency drift and memory growth are the benchmark's goals, never assertions here.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
REQUESTS = 500
CONCURRENCY = 8
DISCONNECT_FRACTION = 0.1
#: Generous guards against a hang, not expectations: 500 requests take well under a minute on 2 cores.
REQUEST_LIMIT_S = 120.0
LOAD_LIMIT_S = 900.0


@pytest.fixture(scope="module")
def soak() -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))  # soak.py imports its neighbour `_common` the way a script does
    try:
        return importlib.import_module("soak")
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_schedule_is_seeded_and_mixes_every_kind(soak: ModuleType) -> None:
    a = soak.build_schedule(REQUESTS, 0, DISCONNECT_FRACTION)
    assert a == soak.build_schedule(REQUESTS, 0, DISCONNECT_FRACTION)
    assert a != soak.build_schedule(REQUESTS, 1, DISCONNECT_FRACTION)
    assert {p.kind for p in a} == set(soak.KINDS)
    streams = [p for p in a if p.kind.stream]
    assert sum(p.disconnect for p in a) == round(DISCONNECT_FRACTION * len(streams))
    assert not any(p.disconnect for p in a if not p.kind.stream)
    assert {p.kind.api for p in soak.openai_part(a)} == {"openai"}


def test_soak_short(soak: ModuleType, tmp_path: Path) -> None:
    schedule = soak.build_schedule(REQUESTS, seed=0, disconnect_fraction=DISCONNECT_FRACTION)
    planned_disconnects = sum(p.disconnect for p in schedule)
    server = soak.lokal_server(tmp_path, parallel=4, threads=int(os.environ.get("LOKAL_NUM_THREADS") or 0) or None)
    options = soak.SoakOptions(
        concurrency=CONCURRENCY,
        timeout=REQUEST_LIMIT_S,
        overall_timeout=LOAD_LIMIT_S,
        progress_every=0,
        rss_interval=1.0,
    )

    run = soak.soak(server, schedule, options)
    figures = soak.summarise(run)
    print(soak.progress_line("lokal", run, len(schedule), run.wall_s, run.rss_end))  # shown with -s or on failure

    assert not run.interrupted
    assert not figures["warm_up_failures"], figures["warm_up_failures"]
    assert not run.load_timed_out, f"the load did not finish within {LOAD_LIMIT_S} s: {figures['unfinished']} hung"
    assert figures["finished"] == REQUESTS, f"{figures['unfinished']} requests never finished"
    assert figures["errors"] == 0, (
        f"errors by kind: {figures['errors_by_kind']}; by route: {figures['errors_by_route']}"
    )
    assert figures["disconnects"] == planned_disconnects
    assert figures["ok"] == REQUESTS - planned_disconnects
    slots = figures["slots"]
    assert slots is not None
    assert slots["idle_after_load"], f"running/queued after the load: {slots['counts_after_load']}"
    assert slots["max_running"] == slots["num_parallel"], slots
    assert slots["burst_ok"] == slots["num_parallel"], slots["burst_errors"]
    assert slots["idle_after_burst"], f"running/queued after the slot check: {slots['counts_after_burst']}"
    assert run.rss, "the RSS sampler read nothing"
