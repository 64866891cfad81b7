"""lokal: run, measure and audit language models on your own machine, offline.

The module-level functions mirror the official `ollama` client, in process:

    import lokal
    print(lokal.chat(model="smollm2", messages=[{"role": "user", "content": "Hello!"}])["message"]["content"])

Importing lokal has no side effects: the default client (and any model) is created on first use.
"""

from __future__ import annotations

import threading
from typing import Any

from lokal._version import __version__
from lokal.errors import (
    ContextOverflow,
    InvalidModelName,
    InvalidOptions,
    LokalError,
    ModelNotFound,
)

__all__ = [
    "Client",
    "ContextOverflow",
    "InvalidModelName",
    "InvalidOptions",
    "LokalError",
    "ModelNotFound",
    "__version__",
    "chat",
    "copy",
    "delete",
    "embed",
    "generate",
    "list",
    "ps",
    "pull",
    "show",
]

_default: Any = None
_default_lock = threading.Lock()


def _client() -> Any:
    global _default
    with _default_lock:
        if _default is None:
            import atexit

            from lokal.client import Client

            _default = Client()
            atexit.register(_default.close)
        return _default


def __getattr__(name: str) -> Any:
    if name == "Client":
        from lokal.client import Client

        return Client
    raise AttributeError(f"module 'lokal' has no attribute {name!r}")


def chat(*args: Any, **kwargs: Any) -> Any:
    """Chat with a model in process; see `lokal.client.Client.chat`."""
    return _client().chat(*args, **kwargs)


def generate(*args: Any, **kwargs: Any) -> Any:
    """Complete a prompt in process; see `lokal.client.Client.generate`."""
    return _client().generate(*args, **kwargs)


def embed(*args: Any, **kwargs: Any) -> Any:
    """Embed one text or a list of texts; see `lokal.client.Client.embed`."""
    return _client().embed(*args, **kwargs)


def list() -> Any:
    """Models on this machine (lokal's store, bundled models, Ollama's store)."""
    return _client().list()


def show(model: str) -> Any:
    """Metadata of one model, read from its GGUF."""
    return _client().show(model)


def pull(model: str) -> Any:
    return _client().pull(model)


def delete(model: str) -> Any:
    return _client().delete(model)


def copy(source: str, destination: str) -> Any:
    return _client().copy(source, destination)


def ps() -> Any:
    """Models loaded in this process."""
    return _client().ps()
