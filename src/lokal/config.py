"""Settings, built once from the environment and passed down (no module-level globals).

Each setting reads `LOKAL_<NAME>` first and then the `OLLAMA_<NAME>` variable users of Ollama already
set, so lokal drops into an existing Ollama set-up without new configuration.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

from lokal.errors import InvalidOptions

#: Default context length per sequence. Ollama uses 4096 on machines with under 24 GiB of VRAM.
DEFAULT_CONTEXT_LENGTH = 4096
#: Sequences decoded together per loaded model. Higher than Ollama's 1 because batching is the point:
#: on 2 cores, 4 sequences give about 1.8x the aggregate tokens/s of one, at a modest KV-cache cost.
DEFAULT_NUM_PARALLEL = 4
DEFAULT_KEEP_ALIVE_SECONDS = 300.0
DEFAULT_MAX_LOADED_MODELS = 3
DEFAULT_MAX_QUEUE = 512
DEFAULT_HOST = "127.0.0.1:11434"
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
#: Speculative decoding in the llama.cpp engine: "off", "lookup" (prompt-lookup drafts) or "draft" (a draft model's).
#: LOKAL_SPECULATIVE is one of "off", "lookup" and "draft:MODEL"; a request's `speculative` option one of these.
SPECULATIVE_MODES = ("off", "lookup", "draft")
DEFAULT_SPECULATIVE = "off"

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


#: The longest duration Go's `time.Duration` holds (int64 nanoseconds, about 292 years). Ollama's keep_alive is
#: one, so lokal reads anything longer (`1e308`, `"100000000h"`, Infinity) as "forever" instead of overflowing.
MAX_DURATION_SECONDS = (2**63 - 1) / 1e9


def parse_duration(value: str | float | int | None) -> float | None:
    """Parse an Ollama `keep_alive` value into seconds; `None` means "keep forever".

    Numbers are seconds; strings are Go durations ("5m", "1h30m", "-1m"); a negative value keeps the
    model loaded forever, as in Ollama. A bare number in a string ("3600") is accepted as seconds too.
    Anything longer than `MAX_DURATION_SECONDS` (about 292 years) is forever as well; NaN is an error.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidOptions(f"invalid duration {value!r}: expected seconds or a duration like '5m'")
    if isinstance(value, int | float):
        # Compared before converting: float() of a huge int overflows, and NaN fails every comparison.
        seconds = float(value) if not abs(value) > MAX_DURATION_SECONDS else (math.inf if value > 0 else -math.inf)
    else:
        text = value.strip()
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        try:
            seconds = sign * float(body)
        except ValueError:
            parts = _DURATION_PART.findall(body)
            if not parts or "".join(n + u for n, u in parts) != body:
                raise InvalidOptions(
                    f"invalid duration {value!r}: expected seconds or a duration like '5m' or '1h30m'"
                ) from None
            seconds = sign * sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if math.isnan(seconds):
        raise InvalidOptions(f"invalid duration {value!r}: expected seconds or a duration like '5m'")
    return None if seconds < 0 or seconds > MAX_DURATION_SECONDS else seconds


def _env(environ: Mapping[str, str], name: str) -> str | None:
    for key in (f"LOKAL_{name}", f"OLLAMA_{name}"):
        value = environ.get(key)
        if value not in (None, ""):
            return value
    return None


def _int_env(environ: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = _env(environ, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidOptions(f"LOKAL_{name}/OLLAMA_{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise InvalidOptions(f"LOKAL_{name}/OLLAMA_{name} must be at least {minimum}, got {value}")
    return value


def _engine_env(environ: Mapping[str, str]) -> str | None:
    raw = environ.get("LOKAL_ENGINE")
    if not raw:
        return None
    from lokal.engine_specs import parse_engine

    try:
        return parse_engine(raw)
    except InvalidOptions as exc:
        raise InvalidOptions(f"LOKAL_ENGINE: {exc}") from None


def _speculative_env(environ: Mapping[str, str]) -> str:
    raw = (environ.get("LOKAL_SPECULATIVE") or "").strip()
    if not raw:
        return DEFAULT_SPECULATIVE
    mode, name = parse_speculative(raw)
    return f"draft:{name}" if name is not None else mode


def parse_speculative(value: str) -> tuple[str, str | None]:
    """LOKAL_SPECULATIVE's value as (mode, draft model name): "lookup" -> ("lookup", None), "draft:smollm2" ->
    ("draft", "smollm2"). InvalidOptions says what is accepted."""
    mode, colon, name = value.strip().partition(":")
    mode, name = mode.strip().lower(), name.strip()
    if mode == "draft":
        if not name:
            raise InvalidOptions(
                "LOKAL_SPECULATIVE=draft needs the draft model's name, as draft:MODEL (e.g. draft:smollm2)"
            )
        return mode, name
    if colon or mode not in SPECULATIVE_MODES:
        raise InvalidOptions(f"LOKAL_SPECULATIVE must be off, lookup or draft:MODEL; got {value.strip()!r}")
    return mode, None


def default_threads() -> int:
    """Physical cores: llama.cpp decodes fastest with one thread per physical core."""
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything lokal reads from the environment, in one frozen object."""

    home: Path
    ollama_models: Path
    host: str = DEFAULT_HOST
    context_length: int = DEFAULT_CONTEXT_LENGTH
    num_parallel: int = DEFAULT_NUM_PARALLEL
    num_threads: int = 0  # 0 = physical cores
    keep_alive: float | None = DEFAULT_KEEP_ALIVE_SECONDS
    max_loaded_models: int = DEFAULT_MAX_LOADED_MODELS
    max_queue: int = DEFAULT_MAX_QUEUE
    check_memory: bool = True
    debug: bool = False
    api_key: str | None = None  # LOKAL_API_KEY: when set, the server requires `Authorization: Bearer <key>`
    origins: tuple[str, ...] = ()  # extra CORS origins (OLLAMA_ORIGINS), beyond the local ones
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    #: LOKAL_ENGINE / --engine: "llamacpp" or "transformers" for GGUF models; None lets each model's entry decide.
    engine: str | None = None
    #: Where the transformers engine keeps GGUF files it dequantized (LOKAL_TRANSFORMERS_CACHE, else
    #: <home>/transformers): converting SmolLM2's GGUF takes ~30 s, loading the converted copy under 1 s.
    transformers_cache: Path | None = None
    #: LOKAL_SPECULATIVE: how the llama.cpp engine drafts tokens ("off", "lookup" or "draft:MODEL", see
    #: `parse_speculative`); requests may override it.
    speculative: str = DEFAULT_SPECULATIVE

    @property
    def transformers_cache_dir(self) -> Path:
        return self.transformers_cache or self.home / "transformers"

    @property
    def threads(self) -> int:
        return self.num_threads or default_threads()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("LOKAL_HOME") or Path.home() / ".lokal").expanduser()
        ollama_models = Path(env.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models").expanduser()
        keep_alive_raw = _env(env, "KEEP_ALIVE")
        return cls(
            home=home,
            ollama_models=ollama_models,
            host=_env(env, "HOST") or DEFAULT_HOST,
            context_length=_int_env(env, "CONTEXT_LENGTH", DEFAULT_CONTEXT_LENGTH, minimum=0) or DEFAULT_CONTEXT_LENGTH,
            num_parallel=_int_env(env, "NUM_PARALLEL", DEFAULT_NUM_PARALLEL, minimum=0) or DEFAULT_NUM_PARALLEL,
            num_threads=_int_env(env, "NUM_THREADS", 0, minimum=0),
            keep_alive=DEFAULT_KEEP_ALIVE_SECONDS if keep_alive_raw is None else parse_duration(keep_alive_raw),
            max_loaded_models=_int_env(env, "MAX_LOADED_MODELS", DEFAULT_MAX_LOADED_MODELS, minimum=0)
            or DEFAULT_MAX_LOADED_MODELS,
            max_queue=_int_env(env, "MAX_QUEUE", DEFAULT_MAX_QUEUE, minimum=1),
            check_memory=env.get("LOKAL_CHECK_MEMORY", "1") not in ("0", "false", "no"),
            debug=env.get("LOKAL_DEBUG", "") not in ("", "0", "false", "no"),
            api_key=env.get("LOKAL_API_KEY") or None,
            origins=tuple(o.strip() for o in (_env(env, "ORIGINS") or "").split(",") if o.strip()),
            max_body_bytes=_int_env(env, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, minimum=1024),
            engine=_engine_env(env),
            transformers_cache=Path(env["LOKAL_TRANSFORMERS_CACHE"]).expanduser()
            if env.get("LOKAL_TRANSFORMERS_CACHE")
            else None,
            speculative=_speculative_env(env),
        )

    @property
    def bind(self) -> tuple[str, int]:
        """(host, port) from `OLLAMA_HOST`-style text: "127.0.0.1:11434", ":8080", "0.0.0.0", "http://[::1]:9"."""
        return parse_host(self.host)


def parse_host(text: str) -> tuple[str, int]:
    value = text.strip()
    scheme, _, rest = value.rpartition("://")
    default_port = {"https": 443, "http": 80}.get(scheme, 11434)
    rest = rest.split("/", 1)[0]
    if rest.startswith("["):  # [::1]:port
        host, _, tail = rest[1:].partition("]")
        port_text = tail.lstrip(":")
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
    else:
        host, port_text = rest, ""
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise InvalidOptions(f"invalid host {text!r}: the port must be a number") from None
    if not 0 <= port <= 65535:
        raise InvalidOptions(f"invalid host {text!r}: port {port} is out of range")
    return host or "127.0.0.1", port
