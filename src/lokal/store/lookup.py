"""What the engine layer asks of a model store: `ModelLookup`, the contract `EngineManager` takes.

Why a protocol and not the `ModelStore` class: the manager needs two things (a name made into a model, and the
memory that model will take), and tests give it a store of made-up models without a disk behind them. Anything
with these two methods is a store to the manager; `lokal.store.store.ModelStore` is the real one.
"""

from __future__ import annotations

from typing import Protocol

from lokal.engine_specs import EngineName
from lokal.store.memory import MemoryEstimate
from lokal.store.types import LocalModel


class ModelLookup(Protocol):
    def resolve(self, name: str) -> LocalModel:
        """The model a name means (an alias, a tag, a file, a Hugging Face repo); `ModelNotFound` if none."""
        ...

    def estimate_memory(
        self,
        model: LocalModel,
        *,
        num_ctx: int | None = None,
        num_parallel: int | None = None,
        engine: EngineName = "llamacpp",
    ) -> MemoryEstimate:
        """Memory to load `model` with `num_parallel` sequences of `num_ctx` tokens under `engine`."""
        ...
