"""`lokal run`, `lokal chat` and the error boundary, as a user runs them: a real subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def lokal(*args: str, stdin: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lokal", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )


def test_run_streams_an_answer_from_the_bundled_model():
    result = lokal(
        "run", "smollm2", "--temperature", "0", "--num-predict", "24", "Explain machine learning in simple terms"
    )
    assert result.returncode == 0, result.stderr
    assert "learning" in result.stdout.lower()
    assert len(result.stdout.split()) >= 10


def test_run_is_deterministic_at_temperature_zero_and_verbose_prints_timings():
    args = ("run", "smollm2", "--temperature", "0", "--num-predict", "16", "--verbose", "Name a colour.")
    first, second = lokal(*args), lokal(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert "eval count:           16 token(s)" in first.stderr
    assert "prompt eval rate:" in first.stderr


def test_run_reads_the_prompt_from_stdin():
    result = lokal("run", "smollm2", "--temperature", "0", "--num-predict", "8", stdin="Say hello.")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_run_with_json_format_prints_json():
    result = lokal(
        "run",
        "smollm2",
        "--temperature",
        "0",
        "--num-predict",
        "200",
        "--format",
        "json",
        "Reply with a JSON object with one key, colour, set to a colour name.",
    )
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), dict)


def test_chat_keeps_the_conversation():
    """The second turn's prompt holds the first question and answer (the 135M model is too small to be
    asked what it remembers, so the token counts prove the history is sent)."""
    script = "My name is Ada.\nWhat is my name?\n/clear\nWhat is my name?\n/bye\n"
    result = lokal("chat", "smollm2", "--temperature", "0", "--num-predict", "24", "--verbose", stdin=script)
    assert result.returncode == 0, result.stderr
    prompts = [int(m) for m in re.findall(r"prompt eval count:\s+(\d+)", result.stderr)]
    evals = [int(m) for m in re.findall(r"^eval count:\s+(\d+)", result.stderr, re.MULTILINE)]
    assert len(prompts) == 3
    assert prompts[1] > prompts[0] + evals[0]  # history: question 1, answer 1, question 2
    assert prompts[2] < prompts[1]  # after /clear only the new question is sent
    assert result.stdout.count(">>> ") == 5


def test_unknown_model_is_one_line_and_exit_code_1():
    result = lokal("run", "no-such-model", "hi")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "not found" in result.stderr and "lokal pull" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_option_value_is_a_clear_error():
    result = lokal("run", "smollm2", "--top-p", "3", "hi")
    assert result.returncode == 1
    assert "top_p" in result.stderr and "Traceback" not in result.stderr


def test_context_overflow_is_a_clear_error():
    result = lokal("run", "smollm2", "--num-ctx", "256", "word " * 400)
    assert result.returncode == 1
    assert "context window is 256 tokens" in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback():
    env_debug = os.environ.copy()
    env_debug["LOKAL_DEBUG"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "lokal", "run", "no-such-model", "hi"],
        capture_output=True,
        text=True,
        env=env_debug,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr


def test_a_model_that_cannot_fit_in_memory_is_refused_with_both_figures():
    env = os.environ.copy()
    env["LOKAL_NUM_PARALLEL"] = "4096"  # 4096 sequences x 4096 tokens of KV cache: hundreds of GB
    result = subprocess.run(
        [sys.executable, "-m", "lokal", "run", "smollm2", "hi"], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 1
    assert "needs about" in result.stderr and "GB" in result.stderr and "available" in result.stderr
    assert "Traceback" not in result.stderr
