"""Memory estimate with hand-computed numbers, and the fits check."""

from __future__ import annotations

import pytest

from lokal.errors import InsufficientMemory
from lokal.store.memory import (
    COMPUTE_OVERHEAD_BYTES,
    MemoryEstimate,
    check_fits,
    estimate_memory,
    kv_cache_bytes,
)


def test_kv_cache_smollm2_by_hand() -> None:
    # SmolLM2-135M: 30 layers, 3 KV heads of 64 (K) + 64 (V), q8_0; 4 sequences of 4096 tokens.
    # 30 × 16384 cells × 3 × 128 values × 34 / 32 bytes = 200,540,160
    assert (
        kv_cache_bytes(n_layer=30, num_ctx=4096, num_parallel=4, n_head_kv=3, key_length=64, value_length=64)
        == 200_540_160
    )


def test_estimate_by_hand() -> None:
    est = estimate_memory(
        weights=1_000_000,
        n_layer=2,
        n_head=4,
        n_head_kv=2,
        key_length=16,
        value_length=16,
        n_embd=64,
        n_vocab=100,
        num_ctx=128,
        num_parallel=2,
    )
    # KV: 2 layers × 256 cells × 2 heads × 32 values × 34 / 32 bytes (q8_0) = 34,816
    assert est.kv_cache == 34_816
    # compute: ubatch = min(512, 256) = 256 tokens; per token 100 + 4×128 + 4×64 = 868 f32 values
    assert est.compute == 4 * 256 * 868 + COMPUTE_OVERHEAD_BYTES == 888_832 + 33_554_432
    assert est.total == 1_000_000 + 34_816 + 34_443_264
    assert est.to_dict()["total"] == est.total


def test_estimate_grows_linearly_with_context_and_parallelism() -> None:
    base = {"weights": 0, "n_layer": 4, "n_head": 8, "n_head_kv": 8, "key_length": 64, "value_length": 64}
    base |= {"n_embd": 512, "n_vocab": 0}
    one = estimate_memory(**base, num_ctx=1024, num_parallel=1)
    assert estimate_memory(**base, num_ctx=2048, num_parallel=1).kv_cache == 2 * one.kv_cache
    assert estimate_memory(**base, num_ctx=1024, num_parallel=4).kv_cache == 4 * one.kv_cache


def test_invalid_shape() -> None:
    with pytest.raises(ValueError):
        estimate_memory(
            weights=0, n_layer=1, n_head=1, n_head_kv=1, key_length=1, value_length=1, n_embd=1, n_vocab=1,
            num_ctx=0,
        )  # fmt: skip


def _est(total_gb: float) -> MemoryEstimate:
    weights = int(total_gb * 1e9) - 400_000_000 - 100_000_000
    return MemoryEstimate(weights=weights, kv_cache=400_000_000, compute=100_000_000, num_ctx=8192, num_parallel=4)


def test_check_fits_raises_with_both_figures_and_advice() -> None:
    with pytest.raises(InsufficientMemory) as info:
        check_fits(_est(3.0), available=1_500_000_000, model="big:latest")
    message = str(info.value)
    assert "needs about 3.0 GB" in message
    assert "only 1.5 GB is available" in message
    assert "KV cache 400 MB for 4 × 8192 tokens" in message
    assert "num_ctx" in message and "num_parallel" in message
    assert "'big:latest'" in message
    assert isinstance(info.value, MemoryError)


def test_check_fits_passes_and_uses_free_memory_by_default() -> None:
    check_fits(_est(3.0), available=4_000_000_000)
    tiny = MemoryEstimate(weights=1, kv_cache=1, compute=1, num_ctx=1, num_parallel=1)
    check_fits(tiny)  # psutil's available memory is certainly above 3 bytes


def test_estimate_for_model_matches_the_store(make_gguf) -> None:
    from lokal.config import Settings
    from lokal.store import ModelStore
    from lokal.store.memory import estimate_for_model

    store = ModelStore(Settings.from_env())
    model = store.pull(str(make_gguf()), name="tiny", progress=False)
    direct = estimate_for_model(model, num_ctx=128, num_parallel=2)
    assert direct == store.estimate_memory(model, num_ctx=128, num_parallel=2)
    assert direct.kv_cache == 34_816 and direct.weights == model.size


def test_estimates_of_a_model_and_its_draft_add_part_by_part() -> None:
    from lokal.store.memory import MemoryEstimate

    a = MemoryEstimate(weights=100, kv_cache=20, compute=3, num_ctx=512, num_parallel=2)
    b = MemoryEstimate(weights=10, kv_cache=2, compute=1, num_ctx=512, num_parallel=2)
    assert (a + b).to_dict() == {
        "weights": 110,
        "kv_cache": 22,
        "compute": 4,
        "num_ctx": 512,
        "num_parallel": 2,
        "total": 136,
    }
    with pytest.raises(ValueError, match="num_ctx or num_parallel"):
        a + MemoryEstimate(weights=1, kv_cache=1, compute=1, num_ctx=1024, num_parallel=2)
