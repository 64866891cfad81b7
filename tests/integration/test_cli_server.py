"""The CLI and the server together, as with Ollama: `run`, `chat`, `ps` and `rm` use a running server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served():
    """A real `lokal serve` process on a free loopback port; yields the environment that points at it."""
    port = _free_port()
    env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{port}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lokal", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail("lokal serve did not start")
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def lokal(env, *args, stdin=""):
    return subprocess.run(
        [sys.executable, "-m", "lokal", *args], input=stdin, capture_output=True, text=True, env=env, timeout=300
    )


def test_ps_without_a_server_gives_a_one_line_hint():
    result = lokal(os.environ.copy(), "ps")
    assert result.returncode == 1
    assert "lokal serve" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_run_goes_through_the_server_and_reuses_its_model(served):
    first = lokal(served, "run", "smollm2", "--temperature", "0", "--num-predict", "12", "--verbose", "Hello")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip()
    second = lokal(served, "run", "smollm2", "--temperature", "0", "--num-predict", "12", "--verbose", "Hello")
    assert second.stdout == first.stdout
    assert "load duration:        0.0 ms" in second.stderr  # the server kept the model loaded
    ps = lokal(served, "ps", "--json")
    assert [m["name"] for m in json.loads(ps.stdout)["models"]] == ["smollm2:135m"]
    table = lokal(served, "ps")
    assert "smollm2:135m" in table.stdout and "CONTEXT" in table.stdout


def test_chat_through_the_server(served):
    result = lokal(served, "chat", "smollm2", "--num-predict", "8", stdin="Hi\n/bye\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(">>> ") == 2


def test_errors_from_the_server_are_one_line(served):
    result = lokal(served, "run", "no-such-model", "hi")
    assert result.returncode == 1
    assert "not found" in result.stderr and "Traceback" not in result.stderr


def test_rm_through_the_server_unloads_first(served):
    assert lokal(served, "cp", "smollm2", "mysmol").returncode == 0
    assert lokal(served, "run", "mysmol", "--num-predict", "2", "hi").returncode == 0
    removed = lokal(served, "rm", "mysmol")
    assert removed.returncode == 0, removed.stderr
    names = [m["name"] for m in json.loads(lokal(served, "ps", "--json").stdout)["models"]]
    assert "mysmol:latest" not in names
    assert "mysmol" not in lokal(served, "list").stdout
