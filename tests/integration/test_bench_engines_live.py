"""`lokal bench smollm2 --engine llamacpp,transformers` for real: the bundled GGUF under both engines, one after
the other, in one result and one report. Tiny on purpose (one request per level, a few tokens): it proves the
plumbing on real engines, not their speed."""

from __future__ import annotations

import pytest

from lokal.bench.result import load
from lokal.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.hf]


def test_bench_smollm2_on_both_engines_side_by_side(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LOKAL_NUM_THREADS", "1")
    out, html = tmp_path / "engines.json", tmp_path / "engines.html"
    tiny = ["-n", "1", "-c", "1", "--warmup", "0", "--max-tokens", "4"]
    code = main(["bench", "smollm2", "--engine", "llamacpp,transformers", *tiny, "-o", str(out), "--html", str(html)])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    result = load(out)
    assert [lv.engine for lv in result.levels] == ["llamacpp", "transformers"]
    for level in result.levels:
        (sample,) = level.samples
        assert sample.ok, sample.error
        assert sample.token_source == "engine" and 1 <= sample.output_tokens <= 4
    assert [(turn.engine, turn.started_at_s <= turn.ended_at_s) for turn in result.engines] == [
        ("llamacpp", True),
        ("transformers", True),
    ]
    llama, hf = result.cold_start
    assert (llama.engine, hf.engine) == ("llamacpp", "transformers")
    assert llama.load_s and hf.load_s and hf.first_ttft_ms is not None
    # The transformers engine dequantized the Q4_1 GGUF: float32 weights (read from its cached conversion here).
    assert hf.load_info["runtime"] == "transformers" and hf.load_info["dtype"] == "float32"
    assert "transformers" in result.target.server_version and "llama-cpp-python" in result.target.server_version
    assert result.memory is not None and result.memory.samples
    assert "smollm2 (llamacpp)" in stdout and "smollm2 (transformers)" in stdout
    page = html.read_text()
    assert "smollm2 (llamacpp)" in page and "smollm2 (transformers)" in page and "Models and engines" in page
    # The saved result renders again to the same page.
    again = tmp_path / "again.html"
    assert main(["report", str(out), "--html", str(again)]) == 0
    assert again.read_bytes() == html.read_bytes()
