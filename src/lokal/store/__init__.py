"""The model store: names, on-disk layout, manifests, sources and GGUF metadata.

`ModelStore` and `ModelInfo` are imported lazily (PEP 562), so `import lokal.store` (done by the engine
for its types) costs nothing; heavy libraries (gguf, huggingface_hub, psutil) load only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lokal.store.info import ModelInfo
    from lokal.store.memory import MemoryEstimate, check_fits
    from lokal.store.store import ModelStore
    from lokal.store.types import LocalModel, ModelDetails

__all__ = ["LocalModel", "MemoryEstimate", "ModelDetails", "ModelInfo", "ModelStore", "check_fits"]

_LAZY = {
    "ModelStore": "lokal.store.store",
    "ModelInfo": "lokal.store.info",
    "MemoryEstimate": "lokal.store.memory",
    "check_fits": "lokal.store.memory",
    "LocalModel": "lokal.store.types",
    "ModelDetails": "lokal.store.types",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lokal.store' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
