"""`lokal cache`, `lokal cache prune` and `lokal cost` through click's CliRunner, on stores and results built here."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from test_cache import Stores
from test_cost import make_level, make_result

from lokal.cli import Context
from lokal.cli import cache as cache_cli
from lokal.cli import cost as cost_cli
from lokal.config import Settings
from lokal.cost import UnknownApiModel, load
from lokal.results import save

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def invoke(command: click.Command, *args: str) -> Result:
    return CliRunner().invoke(command, list(args), obj=Context(Settings.from_env()), catch_exceptions=True)


@pytest.fixture
def stores(tmp_path: Path, make_gguf, monkeypatch: pytest.MonkeyPatch) -> Stores:
    return Stores(tmp_path, make_gguf, monkeypatch)


def test_commands_are_exported() -> None:
    assert [c.name for c in cache_cli.COMMANDS] == ["cache"]
    assert sorted(cache_cli.cache.commands) == ["list", "prune"]
    assert [c.name for c in cost_cli.COMMANDS] == ["cost"]
    for args in (["--help"], ["list", "--help"], ["prune", "--help"]):
        assert invoke(cache_cli.cache, *args).exit_code == 0
    help_text = invoke(cost_cli.cost, "--help").output
    assert "cloud-cpu-small" in help_text and "amortised over 3 years" in help_text


# --- lokal cache ----------------------------------------------------------------------------------------------


def test_cache_json_and_table(stores: Stores) -> None:
    result = invoke(cache_cli.cache, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["kind"] == "cache" and report["schema_version"] == 1
    names = {(e["source"], e["name"]) for e in report["entries"] if e["kind"] == "model"}
    assert ("lokal", "a:latest") in names and ("hf", "org/tiny-GGUF") in names and ("ollama", "olla:copy") in names

    listed = invoke(cache_cli.cache, "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split() == ["SOURCE", "NAME", "SIZE", "SHARED", "LAST", "USED", "MODIFIED", "PATH"]
    assert any(line.startswith("hf ") and "org/tiny-GGUF" in line for line in lines)
    assert "  lokal: tinybundle:latest: " in listed.output and "the installed Python package tinypkg" in listed.output
    assert any(line.startswith("all ") for line in lines)
    assert invoke(cache_cli.cache).output == listed.output  # `lokal cache` is `lokal cache list`


def test_cache_chart_is_a_png(stores: Stores, tmp_path: Path) -> None:
    out = tmp_path / "charts" / "cache.png"
    result = invoke(cache_cli.cache, "--chart", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp file left


def test_prune_plans_without_yes_and_deletes_with_it(stores: Stores) -> None:
    before = stores.files()
    planned = invoke(cache_cli.cache, "prune", "a", "b", "--source", "lokal")
    assert planned.exit_code == 0, planned.output
    assert "nothing was deleted (add --yes to delete)" in planned.output
    assert "a:latest" in planned.output and "b:latest" in planned.output
    assert stores.files() == before

    as_json = json.loads(invoke(cache_cli.cache, "prune", "a", "b", "--json").output)
    assert as_json["executed"] is False and as_json["frees_bytes"] == stores.g_a + 77 + 55
    assert stores.files() == before

    done = invoke(cache_cli.cache, "prune", "a", "b", "--yes")
    assert done.exit_code == 0, done.output
    assert "freed" in done.output
    assert not stores.a.path.exists() and stores.fromhf.path.exists() and stores.bundle.path.exists()


def test_prune_refuses_ollama_and_unknown_names(stores: Stores) -> None:
    before = stores.files()
    refused = invoke(cache_cli.cache, "prune", "--source", "ollama", "--older-than", "0s", "--yes")
    assert refused.exit_code != 0 and "read-only" in str(refused.exception)
    kept = invoke(cache_cli.cache, "prune", "olla:latest", "--yes")
    assert kept.exit_code == 0, kept.output
    assert "KEPT" in kept.output and "ollama rm olla:latest" in kept.output and "nothing to delete" in kept.output
    unknown = invoke(cache_cli.cache, "prune", "nope")
    assert unknown.exit_code != 0 and "nothing in the caches matches 'nope'" in str(unknown.exception)
    bad_age = invoke(cache_cli.cache, "prune", "--older-than", "soon")
    assert "invalid age" in str(bad_age.exception)
    assert stores.files() == before


# --- lokal cost -----------------------------------------------------------------------------------------------


@pytest.fixture
def bench_file(tmp_path: Path) -> Path:
    # 10 requests of 100 prompt + 50 output tokens in 5.0 s: 2 requests/s, 100 output tokens/s.
    return save(make_result(make_level(10, 5.0)), tmp_path / "bench.json")


COST_ARGS = ("--hardware-usd-per-hour", "0.684", "--watts", "180", "--usd-per-kwh", "0.20", "--api", "gpt-4o-mini")


def test_cost_json_output_file_and_chart(bench_file: Path, tmp_path: Path) -> None:
    out, chart = tmp_path / "cost.json", tmp_path / "cost.png"
    result = invoke(cost_cli.cost, str(bench_file), *COST_ARGS, "--json", "--output", str(out), "--chart", str(chart))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # $0.72/h ÷ 7,200 requests/h × 1000 = $0.1 per 1,000 requests; ÷ 360,000 tokens/h × 10^6 = $2 per 1M tokens.
    assert Decimal(data["figures"]["local"]["usd_per_1k_requests"]) == Decimal("0.1")
    assert Decimal(data["figures"]["local"]["usd_per_1m_output_tokens"]) == 2
    assert data["figures"]["apis"][0]["model_id"] == "gpt-4o-mini"
    assert data["inputs"]["bench_file"] == str(bench_file)
    assert load(out).model_dump(mode="json") == data
    assert chart.read_bytes()[:8] == PNG_MAGIC


def test_cost_text_output(bench_file: Path) -> None:
    result = invoke(cost_cli.cost, str(bench_file), *COST_ARGS)
    assert result.exit_code == 0, result.output
    assert "2.000 requests/s, 100.0 output tokens/s" in result.output
    assert "$0.684 hardware + $0.0360 energy (180 W × $0.200/kWh) = $0.720" in result.output
    local = next(line for line in result.output.splitlines() if line.startswith("local (custom)"))
    assert local.split()[2:4] == ["$0.100", "$2.00"]
    assert "API prices: genai-prices" in result.output and "10^6" in result.output


def test_cost_default_preset_and_apis(bench_file: Path) -> None:
    result = invoke(cost_cli.cost, str(bench_file), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["assumptions"]["hardware"] == "laptop"
    assert [a["ref"] for a in data["figures"]["apis"]] == list(cost_cli.DEFAULT_APIS)


def test_cost_bad_input(bench_file: Path, tmp_path: Path) -> None:
    unknown = invoke(cost_cli.cost, str(bench_file), "--api", "gpt-4o-mni")
    assert isinstance(unknown.exception, UnknownApiModel) and "gpt-4o-mini" in str(unknown.exception)
    negative = invoke(cost_cli.cost, str(bench_file), "--watts", "-5")
    assert negative.exit_code == 2 and "--watts must be a finite number of at least 0" in negative.output
    missing = invoke(cost_cli.cost, str(tmp_path / "nope.json"))
    assert "no result file at" in str(missing.exception)
    level = invoke(cost_cli.cost, str(bench_file), "--level", "7")
    assert "no level 7 in the result" in str(level.exception)
