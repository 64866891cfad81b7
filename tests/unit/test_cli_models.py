"""`lokal pull/list/show/rm/cp` through click's CliRunner, against a temp LOKAL_HOME."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from lokal.cli import models
from lokal.config import Settings


class _State:
    """The part of `lokal.cli.Context` these commands use (so these tests do not depend on `run`)."""

    def __init__(self) -> None:
        from lokal.store import ModelStore

        self.store = ModelStore(Settings.from_env())
        self.remote = None  # no server: the commands work on the store directly


@click.group()
@click.pass_context
def group(ctx: click.Context) -> None:
    ctx.obj = _State()


for _command in models.COMMANDS:
    group.add_command(_command)


def invoke(*args: str) -> click.testing.Result:
    return CliRunner().invoke(group, list(args), catch_exceptions=True)


def test_command_names_and_help() -> None:
    assert [c.name for c in models.COMMANDS] == ["pull", "list", "show", "rm", "cp", "create"]
    for command in models.COMMANDS:
        result = invoke(command.name, "--help")
        assert result.exit_code == 0 and len(result.output) > 100


def test_pull_list_show_rm_cp_round_trip(make_gguf) -> None:
    path = make_gguf("Tiny.gguf")
    result = invoke("pull", str(path), "--name", "tiny", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "success: 'tiny:latest'" in result.output

    listed = json.loads(invoke("list", "--json").output)
    assert [m["name"] for m in listed] == ["tiny:latest"]
    assert listed[0]["details"]["quantization_level"] == "Q4_0" and listed[0]["source"] == "file"
    assert listed[0]["digest"].startswith("sha256:") and listed[0]["read_only"] is False

    table = invoke("list").output.splitlines()
    assert table[0].split() == ["NAME", "ID", "SIZE", "FORMAT", "QUANT", "PARAMS", "SOURCE", "ENGINE", "MODIFIED"]
    assert table[1].startswith("tiny:latest") and listed[0]["digest"][7:19] in table[1]

    assert invoke("cp", "tiny", "tiny2").output.strip() == "copied 'tiny' to 'tiny2'"
    shown = json.loads(invoke("show", "tiny2", "--json", "--num-ctx", "128", "--parallel", "2").output)
    assert shown["name"] == "tiny2:latest" and shown["architecture"] == "llama"
    assert shown["context_length"] == 2048 and shown["quantization"] == "Q4_0"
    assert shown["memory"]["kv_cache"] == 34_816 and shown["memory"]["num_parallel"] == 2
    assert shown["memory"]["total"] == sum(shown["memory"][k] for k in ("weights", "kv_cache", "compute"))

    text = invoke("show", "tiny").output
    for needle in ("architecture", "llama", "quantization", "Q4_0", "context length", "2048", "apache-2.0",
                   "KV cache", "Memory (num_ctx"):  # fmt: skip
        assert needle in text
    assert "add_generation_prompt" in invoke("show", "tiny", "--template").output
    assert invoke("show", "tiny", "--license").output.strip() == "apache-2.0"

    result = invoke("rm", "tiny")
    assert result.output.strip() == "deleted 'tiny'"
    assert [m["name"] for m in json.loads(invoke("list", "--json").output)] == ["tiny2:latest"]
    assert invoke("show", "tiny2", "--json").exit_code == 0  # shared blob kept
    assert invoke("rm", "tiny2").exit_code == 0
    assert json.loads(invoke("list", "--json").output) == []


def test_rm_several_and_unknown(make_gguf) -> None:
    invoke("pull", str(make_gguf()), "--name", "a", "--no-progress")
    invoke("cp", "a", "b")
    result = invoke("rm", "a", "b")
    assert result.output.splitlines() == ["deleted 'a'", "deleted 'b'"]


def test_empty_list_hints_at_the_bundled_model() -> None:
    result = invoke("list")
    assert result.exit_code == 0 and result.output.strip().startswith("NAME")
    assert "lokal run smollm2" in result.stderr


def test_errors_are_one_line_and_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from lokal.cli import main

    assert main(["show", "no-such-model"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: model 'no-such-model' not found") and "\n" not in err
    assert main(["show", "a/../b"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: invalid model name 'a/../b'") and "\n" not in err
    assert main(["rm", "/etc/passwd"]) == 1
    assert "looks like a path" in capsys.readouterr().err
    bad = tmp_path / "bad.gguf"
    bad.write_text("nope")
    assert main(["pull", str(bad)]) == 1
    assert "not a GGUF model" in capsys.readouterr().err


def test_registered_in_the_real_cli() -> None:
    from lokal.cli import cli

    for name in ("pull", "list", "show", "rm", "cp"):
        assert name in cli.commands
