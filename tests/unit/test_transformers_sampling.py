"""The transformers engine's sampler and incremental detokenizer, on hand-made logits (no model)."""

from __future__ import annotations

import pytest

from lokal.engine.options import Options

pytestmark = pytest.mark.hf


def sampler(**options: object):
    from lokal.engine.transformers.sampling import Sampler

    return Sampler(Options.from_mapping(options), seed=1234)


def test_greedy_takes_the_highest_logit() -> None:
    import torch

    assert sampler(temperature=0).sample(torch.tensor([0.1, 2.0, 1.9, -3.0])) == 1


def test_repeat_penalty_follows_llama_cpp_on_generated_tokens_only() -> None:
    import torch

    s = sampler(temperature=0, repeat_penalty=2.0, repeat_last_n=64)
    # Nothing generated yet: no penalty, token 1 (logit 2.0) wins.
    assert s.sample(torch.tensor([1.5, 2.0, -1.0])) == 1
    # Token 1 was generated: its positive logit 2.0 is divided by 2 -> 1.0, so token 0 (1.5) wins.
    assert s.sample(torch.tensor([1.5, 2.0, -1.0])) == 0
    # Both 0 and 1 generated: 1.5/2 = 0.75 and 2.0/2 = 1.0; token 2 was never generated, so 0.9 stays 0.9.
    assert s.sample(torch.tensor([1.5, 2.0, 0.9])) == 1
    # A negative logit of a generated token is multiplied: -0.5*2 = -1.0, below token 2's untouched -0.9.
    s.history = [0]
    assert s._penalise(torch.tensor([-0.5, 0.0, -0.9])).tolist() == pytest.approx([-1.0, 0.0, -0.9])


def test_frequency_and_presence_penalties_subtract_per_count() -> None:
    import torch

    s = sampler(temperature=0, frequency_penalty=0.5, presence_penalty=0.25, repeat_last_n=-1)
    s.history = [0, 0, 1]
    # token 0: 3.0 - 2*0.5 - 0.25 = 1.75; token 1: 2.5 - 1*0.5 - 0.25 = 1.75; token 2: 1.8 untouched, the largest.
    assert s._penalise(torch.tensor([3.0, 2.5, 1.8])).tolist() == pytest.approx([1.75, 1.75, 1.8])
    assert s.sample(torch.tensor([3.0, 2.5, 1.8])) == 2


def test_repeat_last_n_limits_the_window() -> None:
    import torch

    s = sampler(temperature=0, repeat_penalty=4.0, repeat_last_n=1)
    s.history = [0, 1]  # only the last token (1) is in a window of 1
    assert s._penalise(torch.tensor([2.0, 2.0])).tolist() == pytest.approx([2.0, 0.5])


def test_top_k_one_is_greedy_even_when_sampling() -> None:
    import torch

    logits = torch.tensor([0.0, 0.5, 3.0, 2.9])
    assert {sampler(temperature=1.5, top_k=1, seed=s).sample(logits) for s in range(20)} == {2}


def test_the_same_seed_draws_the_same_tokens() -> None:
    import torch

    logits = torch.zeros(50)  # uniform: every draw depends on the generator only

    def draws(seed: int) -> list[int]:
        from lokal.engine.transformers.sampling import Sampler

        s = Sampler(Options.from_mapping({"temperature": 1.0, "top_k": 0, "top_p": 1.0}), seed=seed)
        return [s.sample(logits) for _ in range(10)]

    assert draws(5) == draws(5)
    assert draws(5) != draws(6)


class CharTokenizer:
    """Token i is byte i; decoding shows an incomplete UTF-8 sequence as U+FFFD, as real tokenizers do."""

    def decode(self, ids: list[int], **_: object) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


def test_detokenizer_holds_back_half_a_character() -> None:
    from lokal.engine.transformers.batcher import Detokenizer

    d = Detokenizer(CharTokenizer())
    euro = "€".encode()  # 3 bytes: e2 82 ac
    assert d.add(ord("a")) == "a"
    assert d.add(euro[0]) == ""
    assert d.add(euro[1]) == ""
    assert d.add(euro[2]) == "€"
    assert d.add(ord("b")) == "b"
    assert d.add(euro[0]) == ""
    assert d.flush() == "\ufffd"  # generation ended mid-character: shown, not dropped
