"""`lokal card smollm2 -o README.md` on the real bundled model: no results given, so the card holds the GGUF's own
details and marks everything else for the author; it parses back with huggingface_hub and `--check` fails on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from lokal.card.render import TODO
from lokal.cli import cli, main
from lokal.cli.card import card
from lokal.config import Settings
from lokal.store import ModelStore

pytestmark = pytest.mark.integration


def test_card_for_the_bundled_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(cli.commands, "card", card)  # the lead registers it in lokal.cli
    out = tmp_path / "README.md"
    assert main(["card", "smollm2", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"wrote {out}: 0 evaluation results\n"
    assert "place(s) are marked for the model's author" in captured.err

    digest = ModelStore(Settings.from_env()).resolve("smollm2").digest
    text = out.read_text(encoding="utf-8")
    details = text.split("### Model Description", 1)[1].split("### Model Sources", 1)[0]
    for expected in (
        "`llama` architecture, GGUF with a chat template",
        "**Parameters:** 135M (134,515,008)",
        "**Quantization:** Q4_1",
        "**Context length:** 8,192 tokens",
        "**License:** apache-2.0 (from the GGUF metadata)",
        "**Developed by:** HuggingFaceTB (from the GGUF metadata)",
        "**Language(s):** en (from the GGUF metadata)",
        digest,
    ):
        assert expected in details, expected
    assert text.count(TODO) >= 10  # intended use, limitations, risks... are the author's to write
    assert "Not measured: no `lokal bench` result" in text and "Not measured: no `lokal audit` result" in text

    parsed = ModelCard.load(out)
    assert parsed.data.license == "apache-2.0" and parsed.data.language == ["en"]
    assert parsed.data.eval_results is None
    assert parsed.data.lokal["model_digest"] == digest

    assert main(["card", "--check", str(out), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    items = [p["item"] for p in report["missing"]]
    assert "model-index" in items and "intended-use" in items and "placeholder" in items
    assert "license" not in items and not any(i.startswith("section:") for i in items)
