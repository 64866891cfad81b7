"""`lokal bench --engine llamacpp,transformers` on fake engines: one run per engine, one after the other, each
labelled with its engine, and a report that puts the engines side by side like two models."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeFactory, FakeStore, make_model, make_settings

from lokal.bench import result as result_io
from lokal.bench.report.common import build_runs
from lokal.bench.report.console import console_summary
from lokal.bench.report.document import bench_sections, summary_json
from lokal.bench.result import (
    BenchConfig,
    BenchResult,
    ColdStart,
    EngineRun,
    LoadLevel,
    MemorySample,
    MemoryTimeline,
    ModelRef,
    PlatformInfo,
    TargetInfo,
)
from lokal.bench.run import BenchError, BenchPlan, run_bench
from lokal.bench.target import TargetError
from lokal.cli import main
from lokal.engine.manager import EngineManager
from lokal.report.document import Section, Table
from lokal.store.engine_choice import engine_for
from report_fixtures import closed_loop

# -- the plan -------------------------------------------------------------------------------------------------------


def test_plan_normalises_engine_specs_and_drops_repeats() -> None:
    plan = BenchPlan(models=("m",), engines=("llama.cpp", "HF", "llamacpp"))
    assert plan.engines == ("llamacpp", "transformers")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"url": "http://127.0.0.1:11434"}, "a server at --url runs the engine it was started with"),
        ({"engines": ("llamacpp", "vllm")}, "unknown engine 'vllm'"),
    ],
)
def test_plan_refuses_what_cannot_run(changes: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"models": ("m",), "engines": ("llamacpp", "transformers"), **changes}
    with pytest.raises(BenchError, match=message):
        BenchPlan(**values)


def test_plan_refuses_an_slo_search_over_two_engines() -> None:
    from lokal.bench.result import Slo

    with pytest.raises(BenchError, match="one engine's limit"):
        BenchPlan(models=("m",), engines=("llamacpp", "transformers"), search="concurrency", slo=Slo(ttft_ms=100))


# -- running it on fakes --------------------------------------------------------------------------------------------


class EngineFactory(FakeFactory):
    """Like the real default factory, builds the engine `settings.engine` (or the model) asks for; logs loads and
    closes in order. A transformers load of a GGUF converts it the first time (`load_info` says "now"), then reads
    the cached conversion, as the real engine does."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log: list[tuple[str, str]] = []
        self.converted: set[str] = set()

    def __call__(self, model: Any, num_ctx: int, settings: Any) -> Any:
        engine = super().__call__(model, num_ctx, settings)
        runtime = engine_for(model, settings.engine)
        engine.runtime = runtime
        if runtime == "transformers":
            fresh = model.digest not in self.converted
            self.converted.add(model.digest)
            engine.load_info = {"dtype": "float32", "device": "cpu", "converted": "now" if fresh else "cached"}
            if fresh:
                engine.load_info["conversion_seconds"] = 31.5
        self.log.append(("load", runtime))
        close = engine.close

        def logged_close() -> None:
            self.log.append(("close", runtime))
            close()

        engine.close = logged_close
        return engine


@pytest.fixture
def fake_engines(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[EngineFactory, FakeStore]]:
    """Every store and manager the bench builds is the fake one; the `hf` extra counts as installed."""
    factory = EngineFactory(pieces=("Hello", ",", " world"))
    store = FakeStore([make_model("fake:latest")])
    monkeypatch.setattr("lokal.store.ModelStore", lambda settings: store)
    monkeypatch.setattr(
        "lokal.engine.manager.EngineManager", lambda settings, st: EngineManager(settings, st, factory=factory)
    )
    monkeypatch.setattr("lokal.engine_specs.missing_packages", lambda engine: [])
    monkeypatch.setattr("lokal.bench.targets.inprocess.require_engine", lambda engine, name: None)
    yield factory, store


def _plan(tmp_path: Path, **changes: Any) -> BenchPlan:
    values: dict[str, Any] = {
        "models": ("fake",),
        "engines": ("llamacpp", "transformers"),
        "concurrency": (1, 2),
        "requests": 2,
        "warmup": 0,
        "max_tokens": 3,
        "memory": False,
        "settings": make_settings(tmp_path),
        **changes,
    }
    return BenchPlan(**values)


def test_each_engine_runs_the_whole_plan_in_turn_and_is_named_in_the_result(fake_engines, tmp_path: Path) -> None:
    factory, _ = fake_engines
    result = asyncio.run(run_bench(_plan(tmp_path)))
    assert [(lv.engine, lv.label) for lv in result.levels] == [
        ("llamacpp", "sync"),
        ("llamacpp", "concurrency 2"),
        ("transformers", "sync"),
        ("transformers", "concurrency 2"),
    ]
    assert all(s.ok for lv in result.levels for s in lv.samples)
    # Never together: the llama.cpp engine is closed before the transformers one loads. The transformers engine
    # loads twice: the cold start's first load converts the GGUF, so it is timed again from the cache, and
    # measuring keeps that second one loaded to the end of its turn.
    assert factory.log == [
        ("load", "llamacpp"),
        ("close", "llamacpp"),
        ("load", "transformers"),
        ("close", "transformers"),
        ("load", "transformers"),
        ("close", "transformers"),
    ]
    first, second = result.engines
    assert (first.engine, second.engine) == ("llamacpp", "transformers")
    assert first.started_at_s <= first.ended_at_s <= second.started_at_s <= second.ended_at_s
    assert [(m.name, m.engine) for m in result.target.models] == [("fake", "llamacpp"), ("fake", "transformers")]
    assert [c.engine for c in result.cold_start] == ["llamacpp", "transformers"]


def test_both_engines_get_the_same_prompts(fake_engines, tmp_path: Path) -> None:
    factory, _ = fake_engines
    asyncio.run(run_bench(_plan(tmp_path, cold_start=False)))
    by_runtime: dict[str, list[str]] = {}
    for engine in factory.engines:
        by_runtime.setdefault(engine.runtime, []).extend(str(call["messages"]) for call in engine.chat_calls)
    assert by_runtime["llamacpp"] and by_runtime["llamacpp"] == by_runtime["transformers"]


def test_cold_start_records_load_info_and_retimes_a_fresh_gguf_conversion(fake_engines, tmp_path: Path) -> None:
    result = asyncio.run(run_bench(_plan(tmp_path, concurrency=(1,))))
    llama, hf = result.cold_start
    assert llama.load_info == {"runtime": "llamacpp"}
    # The cold start shown is the second load, from the conversion cache.
    assert hf.load_info == {"runtime": "transformers", "dtype": "float32", "device": "cpu", "converted": "cached"}
    assert hf.load_s is not None and hf.load_s > 0
    (warning,) = [w for w in result.warnings if "converted the GGUF" in w]
    assert warning.startswith("fake (transformers): the first load converted the GGUF file (31.5 s)")


def test_without_engine_the_engine_that_ran_is_still_recorded(fake_engines, tmp_path: Path) -> None:
    result = asyncio.run(run_bench(_plan(tmp_path, engines=(), concurrency=(1,))))
    assert [lv.engine for lv in result.levels] == ["llamacpp"]
    assert result.engines == []  # one turn, nothing to split
    assert result.target.models[0].engine == "llamacpp"
    assert result.target.server_version.startswith("lokal ")


def test_a_missing_hf_extra_fails_before_anything_loads(fake_engines, tmp_path: Path, monkeypatch) -> None:
    factory, _ = fake_engines
    monkeypatch.setattr(
        "lokal.engine_specs.missing_packages", lambda engine: ["torch"] if engine == "transformers" else []
    )
    with pytest.raises(BenchError, match=r"needs the hf extra \(torch missing\): pip install 'lokal\[hf\]'"):
        asyncio.run(run_bench(_plan(tmp_path)))
    assert factory.log == []


def test_a_checkpoint_on_llamacpp_fails_before_the_other_engine_runs(fake_engines, tmp_path: Path) -> None:
    factory, store = fake_engines
    model = store.resolve("fake")
    store.add(dataclasses.replace(model, details=dataclasses.replace(model.details, format="safetensors")))
    with pytest.raises(TargetError, match=r"llama\.cpp runs GGUF files only"):
        asyncio.run(run_bench(_plan(tmp_path, engines=("transformers", "llamacpp"))))
    assert factory.log == []  # the transformers turn did not start either


def test_cli_bench_two_engines_saves_one_result_and_prints_both(fake_engines, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run.json"
    tiny = ["-n", "1", "-c", "1", "--warmup", "0", "--no-memory", "--max-tokens", "3"]
    code = main(["bench", "fake", "--engine", "llamacpp,transformers", *tiny, "-o", str(out)])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    saved = result_io.load(out)
    assert [lv.engine for lv in saved.levels] == ["llamacpp", "transformers"]
    assert "  fake (llamacpp)      sync" in stdout and "  fake (transformers)  sync" in stdout
    assert "cold start fake (transformers): load" in stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--engine", "llamacpp,transformers", "--url", "http://127.0.0.1:9"], "a server at --url runs the engine"),
        (["--engine", "llamacpp,vllm"], "unknown engine 'vllm'"),
    ],
)
def test_cli_bench_engine_usage_errors(argv: list[str], message: str, capsys) -> None:
    code = main(["bench", "fake", *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Usage: lokal bench" in err


# -- the report ------------------------------------------------------------------------------------------------------

MB = 1_000_000
SMOL = "smollm2:135m"


def _level(engine: str, base_ttft: float, gap: float, started: float) -> LoadLevel:
    samples = closed_loop(1, base_ttft, gap)
    end = max(s.end_s for s in samples)
    return LoadLevel(
        model=SMOL, engine=engine, mode="sync", concurrency=1, started_at_s=started, duration_s=end, samples=samples
    )


def engines_result() -> BenchResult:
    """llama.cpp's turn from 0 to 5 s, then transformers' from 5 to 12 s; memory read every second: 100-150 MB
    during llama.cpp's turn, 300-520 MB during transformers'."""
    rss_mb = [100, 150, 150, 120, 110, 300, 480, 520, 500, 500, 500, 500, 500]
    level_at = {1: 0, 2: 0, 7: 1, 8: 1}
    ref = ModelRef(name=SMOL, digest="sha256:" + "a1" * 32, size_bytes=98 * MB, quantization="Q4_1")
    return BenchResult(
        lokal_version="0.6.0",
        created_at=datetime(2025, 6, 1, 12, 30, tzinfo=UTC),
        platform=PlatformInfo(system="Linux", release="6.1", machine="x86_64", python="3.11", cpu="Xeon"),
        target=TargetInfo(
            kind="in-process",
            server_version="lokal 0.6.0, llama-cpp-python 0.3.36, transformers 5.24.0, torch 2.13.0",
            models=[ref.model_copy(update={"engine": "llamacpp"}), ref.model_copy(update={"engine": "transformers"})],
        ),
        config=BenchConfig(max_tokens=5, workload="chat", seed=0, warmup=0),
        # TTFT 20, 30, 40, 50 ms (p50 35) on llama.cpp; 80, 120, 160, 200 ms (p50 140) on transformers.
        levels=[_level("llamacpp", 0.020, 0.010, 1.0), _level("transformers", 0.080, 0.040, 7.0)],
        cold_start=[
            ColdStart(model=SMOL, engine="llamacpp", load_s=0.2, first_ttft_ms=60.0, warm_ttft_ms=30.0),
            ColdStart(
                model=SMOL,
                engine="transformers",
                load_s=2.5,
                first_ttft_ms=400.0,
                warm_ttft_ms=100.0,
                load_info={"runtime": "transformers", "dtype": "float32", "converted": "cached", "cache": "/tmp/c"},
            ),
        ],
        engines=[
            EngineRun(engine="llamacpp", started_at_s=0.0, ended_at_s=5.0),
            EngineRun(engine="transformers", started_at_s=5.0, ended_at_s=12.0),
        ],
        memory=MemoryTimeline(
            pid=1,
            interval_s=1.0,
            samples=[
                MemorySample(t_s=float(t), rss_bytes=mb * MB, level=level_at.get(t)) for t, mb in enumerate(rss_mb)
            ],
        ),
    )


def section(sections: list[Section], title: str) -> Section:
    return next(s for s in sections if s.title == title)


def rows(table: Table) -> list[dict[str, str]]:
    return [dict(zip(table.headers, r, strict=True)) for r in table.rows]


def test_runs_are_named_by_model_and_engine() -> None:
    runs = build_runs([engines_result()])
    assert [(r.name, r.engine) for r in runs] == [
        (f"{SMOL} (llamacpp)", "llamacpp"),
        (f"{SMOL} (transformers)", "transformers"),
    ]


def test_engines_sit_side_by_side_in_every_table() -> None:
    sections = bench_sections([engines_result()])
    summary = rows(section(sections, "Summary").tables[0])
    assert [(r["Run"], r["Level"]) for r in summary] == [
        (f"{SMOL} (llamacpp)", "sync"),
        (f"{SMOL} (transformers)", "sync"),
    ]
    compared = section(sections, "Models and engines").tables[0]
    assert compared.headers[0] == "Model (engine)"
    assert [(r["Model (engine)"], r["TTFT p50 (ms)"]) for r in rows(compared)] == [
        (f"{SMOL} (llamacpp)", "35.0"),
        (f"{SMOL} (transformers)", "140.0"),
    ]
    cold = section(sections, "Cold start")
    assert [(r["Model (engine)"], r["Load (s)"]) for r in rows(cold.tables[0])] == [
        (f"{SMOL} (llamacpp)", "0.200"),
        (f"{SMOL} (transformers)", "2.500"),
    ]
    # The load facts, without the engine (in the label) or the machine's cache path.
    assert cold.paragraphs == (f"{SMOL} (transformers): dtype float32, converted cached.",)
    config = section(sections, "Run configuration and environment")
    assert dict(config.tables[0].rows)["engine"] == "llamacpp, then transformers (one after the other, in this process)"
    assert [(r["Model"], r["Engine"]) for r in rows(config.tables[1])] == [(SMOL, "llamacpp"), (SMOL, "transformers")]


def test_memory_is_split_per_engine_turn() -> None:
    sections = bench_sections([engines_result()])
    memory = section(sections, "Memory")
    peaks = {r["Period"]: r["Peak RSS (MB)"] for r in rows(memory.tables[0])}
    assert peaks == {
        "whole run": "520.0",
        f"{SMOL} (llamacpp): load and every level": "150.0",  # t = 0..4 s
        f"{SMOL} (llamacpp) sync": "150.0",  # t = 1, 2
        f"{SMOL} (transformers): load and every level": "520.0",  # t = 5..12 s
        f"{SMOL} (transformers) sync": "520.0",  # t = 7, 8
    }
    assert any("one after the other in one process" in p for p in memory.paragraphs)
    # Each engine's line starts at its own turn: transformers' samples at 5..12 s are drawn at 0..7 s.
    from matplotlib.figure import Figure

    axes = Figure().add_subplot()
    memory.charts[0].draw(axes)
    lines = {line.get_label(): list(line.get_xdata()) for line in axes.get_lines()}
    assert lines == {
        f"{SMOL} (llamacpp): RSS (peak 150 MB)": [0.0, 1.0, 2.0, 3.0, 4.0],
        f"{SMOL} (transformers): RSS (peak 520 MB)": [float(t) for t in range(8)],
    }


def test_console_and_json_name_the_engines() -> None:
    result = engines_result()
    text = console_summary([result])
    assert f"  {SMOL} (transformers)  sync" in text
    assert f"cold start {SMOL} (transformers): load 2.50 s, first TTFT 400.0 ms, warm 100.0 ms" in text
    (summary,) = summary_json([result])
    assert [lv["engine"] for lv in summary["levels"]] == ["llamacpp", "transformers"]
    assert [e["engine"] for e in summary["engines"]] == ["llamacpp", "transformers"]


def test_two_results_one_engine_each_are_told_apart_by_engine() -> None:
    both = engines_result()
    llama = both.model_copy(update={"levels": both.levels[:1], "cold_start": both.cold_start[:1], "engines": []})
    hf = both.model_copy(update={"levels": both.levels[1:], "cold_start": both.cold_start[1:], "engines": []})
    assert [r.name for r in build_runs([llama, hf])] == [
        f"{SMOL} @ in-process (llamacpp)",
        f"{SMOL} @ in-process (transformers)",
    ]
    assert section(bench_sections([llama, hf]), "Models and engines").tables[0].rows


def test_engine_fields_survive_a_save_and_older_files_read_without_them(tmp_path: Path) -> None:
    result = engines_result()
    again = result_io.load(result_io.save(result, tmp_path / "engines.json"))
    assert again == result
    raw = json.loads((tmp_path / "engines.json").read_text())
    for key in ("engines",):
        del raw[key]
    for level in raw["levels"]:
        del level["engine"]
    for cold in raw["cold_start"]:
        del cold["engine"], cold["load_info"]
    (tmp_path / "old.json").write_text(json.dumps(raw))
    old = result_io.load(tmp_path / "old.json")
    assert old.schema_version == 1 and {lv.engine for lv in old.levels} == {None} and old.engines == []


def test_a_prompts_file_goes_out_as_written_and_only_what_the_run_sends_again_is_tagged(
    fake_engines, tmp_path: Path
) -> None:
    """Issue 16: measured requests send the file's prompts as written, each once until the set is used up;
    warm-ups and cold-start probes send tagged copies, and so do re-sends, which the workload line counts."""
    factory, _ = fake_engines
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Tell me about the number {i}."}) + "\n" for i in range(5)))

    def sent(requests: int) -> tuple[list[str], BenchResult]:
        factory.engines.clear()
        plan = _plan(tmp_path, engines=(), requests=requests, warmup=1, prompts_file=str(prompts))
        result = asyncio.run(run_bench(plan))
        texts = [m["content"] for e in factory.engines for call in e.chat_calls for m in call["messages"]]
        return texts, result

    texts, result = sent(requests=2)  # cold start 4 probes, then 2 levels of 1 warm-up + 2 measured
    plain = [t for t in texts if not t.startswith("[")]
    assert len(plain) == 4 and len(set(plain)) == 4  # the 4 measured requests: 4 of the file's prompts, as written
    tagged = [t for t in texts if t.startswith("[")]
    assert len(tagged) == 6 and sum(t.startswith("[cold") for t in tagged) == 4
    assert all(t.split("] ", 1)[1].startswith("Tell me about the number") for t in tagged)
    assert "re-sent" not in result.config.workload_description

    texts, result = sent(requests=4)  # 8 measured requests from 5 prompts: 3 re-sends
    measured = [t for t in texts if not t.startswith(("[cold", "[w"))]
    assert len(measured) == 8 and sum(not t.startswith("[") for t in measured) == 5
    assert "3 of 8 requests re-sent a prompt with a unique tag" in result.config.workload_description
