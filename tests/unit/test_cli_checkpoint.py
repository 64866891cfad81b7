"""`lokal pull/list/show/rm/cp` with checkpoint folders and `--engine`, through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from test_store_checkpoint import snapshot, write_checkpoint

from lokal.cli import models
from lokal.config import Settings


class _State:
    def __init__(self) -> None:
        from lokal.store import ModelStore

        self.store = ModelStore(Settings.from_env())
        self.remote = None


@click.group()
@click.pass_context
def group(ctx: click.Context) -> None:
    ctx.obj = _State()


for _command in models.COMMANDS:
    group.add_command(_command)


def invoke(*args: str) -> click.testing.Result:
    return CliRunner().invoke(group, list(args), catch_exceptions=True)


def test_pull_list_show_rm_a_folder(tmp_path: Path) -> None:
    folder = write_checkpoint(tmp_path / "ckpt")
    before = snapshot(folder)
    result = invoke("pull", str(folder), "--name", "mine", "--no-progress")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("success: 'mine:latest' (") and "safetensors, transformers)" in result.stdout

    (listed,) = json.loads(invoke("list", "--json").output)
    assert listed["engine"] == "transformers" and listed["path"] == str(folder.resolve())
    assert listed["details"]["format"] == "safetensors" and listed["details"]["quantization_level"] == "BF16"
    header, row = invoke("list").output.splitlines()
    assert header.split() == ["NAME", "ID", "SIZE", "FORMAT", "QUANT", "PARAMS", "SOURCE", "ENGINE", "MODIFIED"]
    assert row.split()[:8] == ["mine:latest", listed["digest"][7:19], *row.split()[2:4], "safetensors", "BF16",
                               "11K", "file"]  # fmt: skip
    assert row.split()[8] == "transformers"

    text = invoke("show", "mine", "--num-ctx", "128", "--parallel", "1").output
    for needle in ("format", "safetensors", "llama", "BF16", "context length", "2048", str(folder.resolve()),
                   "capabilities", "completion", "Memory (num_ctx 128 × 1 parallel, transformers)"):  # fmt: skip
        assert needle in text, needle
    shown = json.loads(invoke("show", "mine", "--json").output)
    assert shown["details"]["format"] == "safetensors" and shown["memory_engine"] == "transformers"
    assert shown["metadata"]["hidden_size"] == 64
    assert invoke("show", "mine", "--template").output.strip().startswith("{% for m in messages %}")

    assert invoke("rm", "mine").output.strip() == "deleted 'mine'"
    assert json.loads(invoke("list", "--json").output) == [] and snapshot(folder) == before


def test_pull_and_cp_remember_an_engine_for_a_gguf(make_gguf) -> None:
    assert invoke("pull", str(make_gguf()), "--name", "g", "--engine", "hf", "--no-progress").exit_code == 0
    result = invoke("cp", "g", "g2", "--engine", "llama.cpp")
    assert result.output.strip() == "copied 'g' to 'g2' (engine llamacpp)"
    engines = {m["name"]: m["engine"] for m in json.loads(invoke("list", "--json").output)}
    assert engines == {"g:latest": "transformers", "g2:latest": "llamacpp"}
    shown = json.loads(invoke("show", "g", "--json").output)
    assert shown["engine"] == "transformers" and shown["details"]["format"] == "gguf"
    assert shown["memory_engine"] == "transformers"  # the remembered engine sizes the estimate
    assert json.loads(invoke("show", "g2", "--json").output)["memory_engine"] == "llamacpp"


def test_a_bad_engine_is_a_usage_error() -> None:
    result = invoke("pull", "smollm2", "--engine", "vllm")
    assert result.exit_code == 2 and "unknown engine 'vllm'" in result.output


def test_llamacpp_for_a_folder_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lokal.cli import main

    folder = write_checkpoint(tmp_path / "ckpt")
    assert main(["pull", str(folder), "--name", "c", "--engine", "llamacpp"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "llama.cpp runs GGUF files only" in err[-1] and "Traceback" not in "".join(err)
