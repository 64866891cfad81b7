"""One error hierarchy for lokal.

Every error a user can cause derives from `LokalError`, so the CLI and the server can turn it into a
one-line message (and an HTTP status) without string matching. Leaf errors also subclass the matching
standard-library type, so callers who know nothing about lokal can still catch them sensibly.
"""

from __future__ import annotations


class LokalError(Exception):
    """Base class for errors lokal reports to users as one line (no traceback)."""

    #: HTTP status the server maps this error to.
    status_code: int = 500


class InvalidModelName(LokalError, ValueError):
    """A model name that is malformed or could escape the store."""

    status_code = 400


class ModelNotFound(LokalError, LookupError):
    """No model of that name in lokal's store, Ollama's store or the bundled packages."""

    status_code = 404

    def __init__(self, name: str, hint: str | None = None) -> None:
        self.name = name
        message = f"model '{name}' not found"
        message += f"; {hint}" if hint else f", try pulling it first: lokal pull {name}"
        super().__init__(message)


class ReadOnlyModel(LokalError, PermissionError):
    """An attempt to change a model lokal only reads (for example one in Ollama's store)."""

    status_code = 403


class PullError(LokalError, RuntimeError):
    """A model could not be fetched or imported."""

    status_code = 500


class HubUnreachable(PullError, ConnectionError):
    """The Hugging Face hub cannot be reached and the file is not in the local cache."""

    status_code = 502


class DigestMismatch(PullError, ValueError):
    """A file whose sha256 is not the one it was published with: it is never placed in the store."""

    status_code = 500


class InvalidBlob(LokalError, ValueError):
    """An uploaded blob whose bytes do not match the digest it was sent under (or a malformed digest)."""

    status_code = 400


class DiskFull(LokalError, OSError):
    """A write to lokal's store ran out of space. Whatever was half-written has been removed again."""

    status_code = 507  # Insufficient Storage

    def __init__(self, directory: object, needed: int | None, free: int | None, what: str) -> None:
        self.needed, self.free = needed, free
        sizes = []
        if needed is not None:
            sizes.append(f"it needs {_size(needed)}")
        if free is not None:
            sizes.append(f"{_size(free)} is free")
        detail = f" ({' and '.join(sizes)})" if sizes else ""
        super().__init__(
            f"not enough disk space in {directory} for {what}{detail}; nothing was changed. "
            "Free some space (lokal cache prune lists what can go) and try again"
        )


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"  # pragma: no cover


class InvalidModelFile(LokalError, ValueError):
    """A file that is not a readable GGUF model."""

    status_code = 400


class InsufficientMemory(LokalError, MemoryError):
    """Loading the model would need more memory than the machine has free."""

    status_code = 507


class InvalidOptions(LokalError, ValueError):
    """A request option with the wrong type or an impossible value."""

    status_code = 400


class ContextOverflow(LokalError, ValueError):
    """A prompt that does not fit the model's context window. Never truncated silently."""

    status_code = 400

    def __init__(self, prompt_tokens: int, context_length: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.context_length = context_length
        super().__init__(
            f"prompt is {prompt_tokens} tokens but the context window is {context_length} tokens; "
            f"shorten the prompt or load the model with a larger num_ctx"
        )


class NoChatTemplate(LokalError, ValueError):
    """A chat request to a model whose GGUF carries no chat template."""

    status_code = 400


class EngineError(LokalError, RuntimeError):
    """llama.cpp failed in a way that is not the caller's fault."""

    status_code = 500


class QueueFull(LokalError, RuntimeError):
    """Too many requests are waiting for this model."""

    status_code = 503


class Cancelled(LokalError):
    """The request was cancelled before it finished."""

    status_code = 499


class EngineUnavailable(LokalError, RuntimeError):
    """The engine a model needs is not installed here (e.g. transformers without the `hf` extra)."""

    status_code = 500


class Unsupported(LokalError, ValueError):
    """The model cannot do what was asked: generating with an embedding-only model, say."""

    status_code = 400
