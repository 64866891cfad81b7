"""`--api` offers exactly the registered targets and scorers, and reading them is left until click needs them."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from lokal.audit.scorers import SCORERS
from lokal.bench.targets import TARGETS
from lokal.cli._choices import RegistryChoice


def _api_type(command: object) -> RegistryChoice:
    (option,) = [p for p in command.params if p.name == "api"]  # type: ignore[attr-defined]
    assert isinstance(option.type, RegistryChoice)
    return option.type


def test_bench_and_audit_offer_their_registries() -> None:
    from lokal.cli.audit import run_cmd
    from lokal.cli.bench import bench

    assert _api_type(bench).choices == tuple(TARGETS) == ("ollama", "openai")
    assert _api_type(run_cmd).choices == tuple(SCORERS) == ("ollama", "openai")


def test_an_unregistered_api_is_a_usage_error() -> None:
    from lokal.cli.bench import bench

    result = CliRunner().invoke(bench, ["--url", "http://127.0.0.1:9", "--api", "vllm", "m"])
    assert result.exit_code == 2
    assert "'vllm' is not one of 'ollama', 'openai'" in result.output


def test_importing_the_cli_does_not_import_the_registries() -> None:
    heavy = ("lokal.bench.targets", "lokal.audit.scorers")
    code = f"import sys, lokal.cli, lokal.cli.bench, lokal.cli.audit; print(sorted(set(sys.modules) & set({heavy})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
