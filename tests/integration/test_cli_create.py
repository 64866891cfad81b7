"""`lokal create NAME -f Modelfile` on the bundled model, then `lokal show --modelfile` and a generation that
uses the created system prompt; a Modelfile lokal cannot honour creates nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def lokal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lokal", *args], capture_output=True, text=True, timeout=300, env=os.environ.copy()
    )


def names() -> set[str]:
    listed = lokal("list", "--json")
    assert listed.returncode == 0, listed.stderr
    return {m["name"].removesuffix(":latest") for m in json.loads(listed.stdout)}


def test_create_from_a_modelfile_and_show_it_back(tmp_path: Path) -> None:
    system = "You answer in French.\nAlways one sentence."
    (tmp_path / "Modelfile").write_text(
        f'FROM smollm2\nPARAMETER temperature 0\nPARAMETER stop "<|im_end|>"\nSYSTEM """{system}"""\nLICENSE MIT\n'
    )
    done = lokal("create", "french", "-f", str(tmp_path / "Modelfile"))
    assert done.returncode == 0, done.stderr
    assert "created 'french:latest' from smollm2" in done.stdout
    shown = lokal("show", "french", "--modelfile")
    assert shown.returncode == 0, shown.stderr
    assert f'SYSTEM """{system}"""' in shown.stdout and "PARAMETER temperature 0" in shown.stdout
    # What show printed creates the same model again.
    (tmp_path / "again").write_text(shown.stdout)
    assert lokal("create", "french2", "-f", str(tmp_path / "again")).returncode == 0
    info = json.loads(lokal("show", "french2", "--json").stdout)
    assert info["system"] == system and info["license"] == "MIT"
    # The created model uses its system prompt: its prompt is the bundled model's with that system turn given.
    from lokal import Client  # the Python API, in process

    hi = [{"role": "user", "content": "Hi"}]
    with Client() as client:
        given = client.chat("smollm2", [{"role": "system", "content": system}, *hi], options={"num_predict": 1})
        french = client.chat("french", hi, options={"num_predict": 1})
        plain = client.chat("smollm2", hi, options={"num_predict": 1})
    assert french["prompt_eval_count"] == given["prompt_eval_count"] != plain["prompt_eval_count"]


def test_template_and_message_lines_make_the_prompt(tmp_path: Path) -> None:
    template = (
        "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant] {% endif %}"
    )
    (tmp_path / "Modelfile").write_text(
        f'FROM smollm2\nTEMPLATE """{template}"""\nMESSAGE user "Hello"\nMESSAGE assistant "Hi, how can I help?"\n'
    )
    done = lokal("create", "seeded", "-f", str(tmp_path / "Modelfile"))
    assert done.returncode == 0, done.stderr
    shown = lokal("show", "seeded", "--modelfile")
    assert f'TEMPLATE """{template}"""' in shown.stdout and 'MESSAGE assistant "Hi, how can I help?"' in shown.stdout
    from lokal import Client

    with Client() as client:
        answer = client.generate("seeded", "Name a colour.", options={"num_predict": 1})
        engine = client.manager.get_loaded("seeded:latest").engine
        prompt = engine.detokenize(answer["context"][: answer["prompt_eval_count"]])
    assert prompt.endswith("[user] Hello\n[assistant] Hi, how can I help?\n[user] Name a colour.\n[assistant] ")


THINKING_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% else %}<think>\n{% endif %}"
    "{% endif %}"
)


def test_a_thinking_template_makes_run_show_the_reasoning_apart(tmp_path: Path) -> None:
    """A TEMPLATE with a reasoning section makes the model a thinking one: `lokal run` prints its reasoning
    dimmed between "Thinking..." and "...done thinking.", `--hide-thinking` leaves it out, `--think false`
    turns it off; a model that cannot think says so."""
    (tmp_path / "Modelfile").write_text(f'FROM smollm2\nTEMPLATE """{THINKING_TEMPLATE}"""\n')
    assert lokal("create", "thinker", "-f", str(tmp_path / "Modelfile")).returncode == 0
    shown = json.loads(lokal("show", "thinker", "--json").stdout)
    assert "thinking" in shown["capabilities"]
    args = ("run", "thinker", "--temperature", "0", "--num-predict", "12", "What is the capital of France?")
    thought = lokal(*args)
    assert thought.returncode == 0, thought.stderr
    assert thought.stdout.startswith("Thinking...\n") and "...done thinking." in thought.stdout
    hidden = lokal(*args, "--hide-thinking")
    assert hidden.returncode == 0 and "Thinking..." not in hidden.stdout
    off = lokal(*args, "--think", "false")
    assert off.returncode == 0 and "Thinking..." not in off.stdout and off.stdout.strip()
    refused = lokal("run", "smollm2", "--think", "high", "Hi")
    assert refused.returncode == 1 and "does not support thinking" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert lokal("rm", "thinker").returncode == 0


@pytest.mark.parametrize("system", [None, "Be brief."])
def test_create_from_a_gguf_file_next_to_the_modelfile(tmp_path: Path, system: str | None) -> None:
    """FROM ./file.gguf is read from the Modelfile's folder, with or without layers over it."""
    bundled = json.loads(lokal("show", "smollm2", "--json").stdout)["path"]
    (tmp_path / "smol.gguf").symlink_to(bundled)
    (tmp_path / "Modelfile").write_text("FROM ./smol.gguf\n" + (f'SYSTEM "{system}"\n' if system else ""))
    done = lokal("create", "fromfile", "-f", str(tmp_path / "Modelfile"))
    assert done.returncode == 0, done.stderr
    assert "created 'fromfile:latest' from ./smol.gguf" in done.stdout
    info = json.loads(lokal("show", "fromfile", "--json").stdout)
    assert info["system"] == system
    missing = tmp_path / "other"
    missing.write_text("FROM ./nope.gguf\n")
    refused = lokal("create", "nofile", "-f", str(missing))
    assert refused.returncode == 1 and "FROM ./nope.gguf: no such file" in refused.stderr


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("TEMPLATE {{ .Prompt }}", "Ollama's Go template language"),
        ("MESSAGE tool hi", "MESSAGE needs a role"),
        ("PARAMETER mirostat 2", "lokal has no parameter 'mirostat'"),
        ("ADAPTER ./lora.gguf", "ADAPTER is not supported"),
    ],
)
def test_a_modelfile_lokal_cannot_honour_creates_nothing(tmp_path: Path, line: str, needle: str) -> None:
    (tmp_path / "Modelfile").write_text(f"FROM smollm2\n{line}\n")
    done = lokal("create", "broken", "-f", str(tmp_path / "Modelfile"))
    assert done.returncode == 1 and needle in done.stderr and "Traceback" not in done.stderr
    assert "broken" not in names()


def test_a_missing_modelfile_says_how_to_give_one(tmp_path: Path) -> None:
    done = lokal("create", "x", "-f", str(tmp_path / "nope"))
    assert done.returncode == 1 and "no Modelfile at" in done.stderr and "-f FILE" in done.stderr
