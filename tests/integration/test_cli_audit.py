"""`lokal audit` and `lokal card` end to end on the bundled model: a dataset suite from ../shared/data, raw
outputs saved beside the result, the card built from that result parsing back with huggingface_hub, and the
errors a user meets first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lokal.audit.result import load
from lokal.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    # Scoring many short texts: one llama.cpp thread is as fast and does not fight other work for the cores.
    monkeypatch.setenv("LOKAL_NUM_THREADS", "1")


@pytest.mark.skipif(not (DATA / "crows-pairs").is_dir(), reason=f"{DATA}/crows-pairs is not on this machine")
def test_audit_then_card(tmp_path, capsys):
    out = tmp_path / "audit.json"
    code, stdout, err = run_cli(
        capsys, "audit", "smollm2", "--suite", "crows-pairs", "--data", str(DATA), "--limit", "6", "-o", str(out)
    )
    assert code == 0, err
    result = load(out)
    (suite,) = result.suites
    assert suite.suite == "crows-pairs" and suite.dataset.items == 6 and suite.dataset.sha256
    assert result.model.digest and result.target == "in-process"
    overall = {m.name: m for m in suite.metrics if m.group is None}
    assert any(name.startswith("pct_stereotype") for name in overall), sorted(overall)
    for m in overall.values():
        assert m.n >= 1 and m.scoring == "log-likelihood"
    raw = Path(suite.raw_outputs)
    assert raw.exists() and len(raw.read_text().splitlines()) == 6
    assert all(json.loads(line) for line in raw.read_text().splitlines())
    assert "crows-pairs" in stdout and "N=6" in stdout

    card = tmp_path / "README.md"
    code, _, err = run_cli(capsys, "card", "smollm2", "--audit", str(out), "-o", str(card))
    assert code == 0, err
    from huggingface_hub import ModelCard

    parsed = ModelCard.load(card)
    assert parsed.data.eval_results, "the audit's figures are in the model-index"
    assert any("CrowS" in (r.dataset_name or "") for r in parsed.data.eval_results)
    # No card.yaml: what only the author can say is marked, so --check reports the card incomplete (exit 1).
    code, _, err = run_cli(capsys, "card", "--check", str(card))
    assert code == 1


def test_a_dataset_suite_without_data_says_what_to_add(tmp_path, capsys):
    code, _, err = run_cli(capsys, "audit", "smollm2", "--suite", "winobias", "-o", str(tmp_path / "x.json"))
    assert code == 1
    assert "--data" in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "x.json").exists()
