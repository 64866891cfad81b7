"""`lokal bench` end to end on the bundled model: in-process, against a live `lokal serve` through both of its
APIs, and the failures a user meets first (a server that is not there, a broken prompts file)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from lokal.bench import metrics
from lokal.bench.result import load
from lokal.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SMALL = ["-n", "2", "--max-tokens", "8", "--warmup", "1"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_in_process_run_saves_a_result_that_re_renders_to_the_same_report(tmp_path, capsys):
    out = tmp_path / "run.json"
    html, md = tmp_path / "run.html", tmp_path / "run.md"
    code, stdout, err = run_cli(
        capsys,
        "bench",
        "smollm2",
        *SMALL,
        "-c",
        "1,2",
        "--batch",
        "2",
        "-o",
        str(out),
        "--html",
        str(html),
        "--markdown",
        str(md),
    )
    assert code == 0, err
    result = load(out)
    assert [(lv.mode, lv.concurrency, lv.batch_size) for lv in result.levels] == [
        ("sync", 1, None),
        ("concurrency", 2, None),
        ("batch", None, 2),
    ]
    for level in result.levels:
        assert len(level.samples) == 2 and level.warmup_requests == 1
        for s in level.samples:
            assert s.ok, s.error
            assert s.token_source == "engine" and 1 <= s.output_tokens <= 8
            assert s.server is not None and s.server.output_tokens == s.output_tokens
            assert s.sent_s <= s.first_token_s <= s.end_s
        summary = metrics.summarize(level)
        assert summary.completed == 2 and summary.output_token_throughput > 0
    assert result.target.kind == "in-process" and result.target.models[0].digest.startswith("sha256:")
    (cold,) = result.cold_start
    assert cold.load_s is not None and cold.load_s > 0 and cold.first_ttft_ms is not None
    assert result.memory is not None and result.memory.samples
    assert result.memory.peak_rss_bytes > 50_000_000  # the 98 MB model is mapped in this process
    assert {s.level for s in result.memory.samples} >= {0, 1, 2}
    assert "smollm2" in stdout and "sync" in stdout  # the console summary
    # Re-rendering the saved JSON gives the same HTML, byte for byte.
    again = tmp_path / "again.html"
    code, _, err = run_cli(capsys, "report", str(out), "--html", str(again))
    assert code == 0, err
    assert again.read_bytes() == html.read_bytes()
    assert md.read_text().count("|") > 10


def test_bench_a_live_server_through_the_ollama_api(server, tmp_path, capsys):
    out = tmp_path / "served.json"
    code, _, err = run_cli(
        capsys,
        "bench",
        "--url",
        server.url,
        "--model",
        "smollm2",
        *SMALL,
        "-c",
        "2",
        "--rate",
        "4",
        "--slo",
        "ttft=60s",
        "-o",
        str(out),
    )
    assert code == 0, err
    result = load(out)
    assert result.target.kind == "ollama"
    assert [lv.mode for lv in result.levels] == ["concurrency", "rate"]
    for level in result.levels:
        for s in level.samples:
            assert s.ok and s.token_source == "usage"
            assert s.server is not None and s.server.eval_ms is not None and s.server.output_tokens == s.output_tokens
    rate = result.levels[1]
    assert all(s.scheduled_s <= s.sent_s for s in rate.samples)
    summary = metrics.summarize(rate, result.config.slo)
    assert summary.good == 2 and summary.slo_attainment == 1.0  # a 60 s TTFT objective is met by every request
    # The server reported its pid (the test process here), so memory was sampled.
    assert result.memory is not None and result.memory.samples


def test_bench_a_live_server_through_the_openai_api(server, tmp_path, capsys):
    out = tmp_path / "openai.json"
    code, _, err = run_cli(
        capsys,
        "bench",
        "--url",
        server.v1,
        "--api",
        "openai",
        "--model",
        "smollm2",
        *SMALL,
        "-c",
        "1",
        "--no-cold-start",
        "-o",
        str(out),
        "--json",
    )
    assert code == 0, err
    result = load(out)
    assert result.target.kind == "openai"
    assert all(s.ok and s.token_source == "usage" for s in result.levels[0].samples)
    assert not result.cold_start


def test_an_unreachable_server_fails_fast_with_one_line_and_no_result(tmp_path, capsys):
    out = tmp_path / "none.json"
    code, _, err = run_cli(capsys, "bench", "--url", "http://127.0.0.1:9", "--model", "m", "-o", str(out))
    assert code == 1
    assert "127.0.0.1:9" in err and "Traceback" not in err and err.count("\n") == 1
    assert not out.exists()


def test_a_malformed_prompts_file_names_the_line(tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "fine"}) + "\n" + "{not json\n")
    code, _, err = run_cli(capsys, "bench", "smollm2", "--prompts", str(prompts), *SMALL, "--no-cold-start")
    assert code == 1
    assert "line 2" in err and "Traceback" not in err


def test_ctrl_c_keeps_the_levels_that_finished(tmp_path):
    """SIGINT once the second level has started: the first level is saved, the result says it is incomplete.

    The child gets SIGINT's default action back before it starts: a shell that runs the suite in the background
    (`nohup bash -c .ci/run &`) passes SIGINT on ignored to every child, and then asyncio.run installs no
    handler for it (a CI run here saw exit 0 and a complete result). Each level runs 2 s, so the signal lands
    inside the second one on a busy machine."""
    out = tmp_path / "partial.json"
    timed = ["--duration", "2s", "--max-tokens", "8", "--warmup", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lokal", "bench", "smollm2", *timed, "-c", "1,2", "--no-cold-start", "-o", str(out)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # without a terminal, each level announces itself on a line of its own
            if "concurrency 2" in line:
                proc.send_signal(signal.SIGINT)
                break
        rest = proc.stderr.read()
        assert proc.wait(timeout=120) == 130, rest
    finally:
        proc.kill()
    result = load(out)
    assert not result.complete
    assert [lv.concurrency for lv in result.levels] == [1]
    assert any("interrupted" in w for w in result.warnings)
    assert "Traceback" not in rest
