"""Workloads: seeded built-in sets, synthetic prompts sized in tokens, unique tags against prefix caches, and
JSONL prompts files whose errors name the line."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from lokal.bench.target import Prompt
from lokal.bench.workload import (
    WORKLOADS,
    WorkloadError,
    estimate_tokens,
    load_prompts_jsonl,
    make_workload,
)


def content(p: Prompt) -> str:
    return p.messages[0]["content"]


def shared_prefix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def words(text: str) -> int:
    """A stand-in tokenizer: one token per whitespace-separated word (exact, so sizes can be checked)."""
    return len(text.split())


# --- built-in sets ------------------------------------------------------------------------------------------


def test_same_seed_same_prompts_other_seed_other_order() -> None:
    a = make_workload(24, seed=1)
    assert [p.messages for p in a] == [p.messages for p in make_workload(24, seed=1)]
    b = make_workload(24, seed=2)
    assert [p.messages for p in a] != [p.messages for p in b]
    # One full pass of the 24 questions either way: the same questions, in another order.
    assert Counter(p.id.split("#")[0] for p in a) == Counter(p.id.split("#")[0] for p in b)


def test_the_first_pass_sends_the_prompts_as_written() -> None:
    """No tag while every prompt goes out for the first time: the workload's own shared prefixes stay shared."""
    wl = make_workload(8, workload="long", seed=5)
    texts = [content(p) for p in wl]
    assert all(t.startswith("Read the text below") for t in texts)
    assert len(set(texts)) == 8 and wl.resent == 0


def test_re_sent_prompts_get_unique_tags_that_leave_no_shared_prefix() -> None:
    """A later pass re-sends the set: each re-send differs from every other request within its leading tag."""
    wl = make_workload(20, workload="long", seed=5)  # 8 questions: two more passes, 12 re-sends
    texts = [content(p) for p in wl]
    assert wl.resent == 12 and len(set(texts)) == 20
    again = texts[8:]
    assert all(t.startswith("[") for t in again) and not any(t.startswith("[") for t in texts[:8])
    tag_len = min(t.index("]") + 1 for t in again)
    for i, a in enumerate(again):
        for b in texts[: i + 8]:
            assert shared_prefix(a, b) < tag_len
    assert all("Harrowmere" in t for t in texts)  # the passage is there, after any tag


def test_start_continues_the_runs_order_across_workloads() -> None:
    """Two workloads of one run (start = what the first took) send what one workload of both sizes would."""
    whole = make_workload(30, workload="chat", seed=4)
    first = make_workload(20, workload="chat", seed=4)
    rest = make_workload(10, workload="chat", seed=4, start=20)
    assert [p.messages for p in (*first, *rest)] == [p.messages for p in whole]
    assert [p.id for p in rest] == [p.id for p in whole][20:]
    assert (first.resent, rest.resent) == (0, 6)  # 24 questions: positions 24-29 are re-sends
    with pytest.raises(WorkloadError, match="start must be 0 or more"):
        make_workload(1, start=-1)


def test_repeat_prefix_sends_the_set_as_is() -> None:
    wl = make_workload(30, workload="chat", seed=1, repeat_prefix=True)
    texts = [content(p) for p in wl]
    assert not any(t.startswith("[") for t in texts)
    # 24 questions cycled over 30 requests: 6 texts appear twice.
    assert len(set(texts)) == 24
    assert wl.repeat_prefix and wl.notes  # the report can say the cache may answer


def test_a_short_set_is_cycled_every_item_before_any_repeat() -> None:
    wl = make_workload(50, workload="chat", seed=3)
    base = [p.id.split("#")[0] for p in wl]
    n = len(set(base))
    assert n == 24
    assert len(set(base[:n])) == n  # the first pass is a permutation of the whole set
    assert max(Counter(base).values()) == 3  # 50 = 24 + 24 + 2
    assert [p.id.split("#")[1] for p in wl] == [str(i) for i in range(50)]


def test_workload_metadata_and_sequence_behaviour() -> None:
    wl = make_workload(5, workload="long", seed=0)
    assert len(wl) == 5 and wl[0] is wl.prompts[0] and list(wl) == list(wl.prompts)
    assert wl.max_tokens == WORKLOADS["long"].max_tokens
    assert wl.token_count == "estimate" and wl.approximate
    assert "(approx.)" in wl.describe()
    assert 600 < wl.prompt_tokens_min <= wl.prompt_tokens_max < 1100
    exact = make_workload(5, workload="long", seed=0, count_tokens=words)
    assert exact.token_count == "tokenizer" and "(approx.)" not in exact.describe()


# --- synthetic prompts ----------------------------------------------------------------------------------------


def test_synthetic_prompts_are_sized_exactly_with_a_tokenizer() -> None:
    wl = make_workload(8, prompt_tokens=100, count_tokens=words, seed=4)
    assert wl.name == "synthetic" and wl.prompt_tokens == 100
    assert [words(content(p)) for p in wl] == [100] * 8
    assert (wl.prompt_tokens_min, wl.prompt_tokens_max) == (100, 100)
    assert len({content(p) for p in wl}) == 8


def test_synthetic_prompts_are_estimated_without_one() -> None:
    wl = make_workload(8, prompt_tokens=200, seed=4)
    assert wl.approximate
    assert all(abs(estimate_tokens(content(p)) - 200) <= 2 for p in wl)
    assert make_workload(8, prompt_tokens=200, seed=4).prompts == wl.prompts  # deterministic


def test_synthetic_repeat_prefix_repeats_one_text() -> None:
    wl = make_workload(4, prompt_tokens=50, repeat_prefix=True)
    assert len({content(p) for p in wl}) == 1


def test_estimate_tokens_by_hand() -> None:
    # "The", "cat", "sat", "." -> 4
    assert estimate_tokens("The cat sat.") == 4
    # "Internationalization": 20 letters > 8 -> ceil(20 / 6) = 4; "!" -> 1
    assert estimate_tokens("Internationalization!") == 5
    # "a", "1", "2", "b": digits count one each
    assert estimate_tokens("a12b") == 4
    assert estimate_tokens("") == 0


# --- JSONL files ----------------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str | bytes, name: str = "prompts.jsonl") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_load_prompts_jsonl(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '{"prompt": "Hello there"}\n'
        "\n"
        '{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],'
        ' "max_tokens": 8, "id": "greet"}\n'
        "   \n",
    )
    prompts = load_prompts_jsonl(path)
    assert prompts == [
        Prompt(id="line-1", messages=({"role": "user", "content": "Hello there"},)),
        Prompt(
            id="greet",
            messages=({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}),
            max_tokens=8,
        ),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"promt": "typo"}', "unknown key 'promt'"),
        ('{"prompt": "a", "messages": [{"role": "user", "content": "b"}]}', "exactly one of"),
        ("{}", "exactly one of"),
        ('{"prompt": ""}', "non-empty string"),
        ('{"prompt": "a", "max_tokens": 0}', "positive integer"),
        ('{"prompt": "a", "max_tokens": true}', "positive integer"),
        ('{"prompt": "a", "max_tokens": "5"}', "positive integer"),
        ('{"messages": []}', "non-empty list"),
        ('{"messages": [{"role": "robot", "content": "x"}]}', "role must be one of"),
        ('{"messages": [{"role": "user", "content": 5}]}', "content must be a string"),
        ('{"messages": ["hi"]}', "must be an object"),
    ],
)
def test_a_malformed_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path, '{"prompt": "fine"}\n\n' + line + "\n")
    with pytest.raises(WorkloadError, match=message) as err:
        load_prompts_jsonl(path)
    assert f"{path} line 3:" in str(err.value)


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match="no prompts file"):
        load_prompts_jsonl(tmp_path / "missing.jsonl")
    with pytest.raises(WorkloadError, match="has no prompts"):
        load_prompts_jsonl(write(tmp_path, ""))
    with pytest.raises(WorkloadError, match="has no prompts"):
        load_prompts_jsonl(write(tmp_path, "\n  \n"))
    with pytest.raises(WorkloadError, match="line 2: not UTF-8"):
        load_prompts_jsonl(write(tmp_path, b'{"prompt": "ok"}\n{"prompt": "\xff"}\n'))


def test_workload_from_a_file_keeps_its_lengths_and_tags_only_re_sends(tmp_path: Path) -> None:
    path = write(tmp_path, '{"prompt": "one", "max_tokens": 3}\n{"prompt": "two"}\n')
    wl = make_workload(5, prompts_file=path, seed=0)
    assert wl.name == "file" and wl.source == str(path) and wl.max_tokens is None
    texts = [content(p) for p in wl]
    assert sorted(texts[:2]) == ["one", "two"]  # the file's prompts, as written
    assert len(set(texts)) == 5 and wl.resent == 3  # then each re-send tagged differently
    assert sorted({t.split("] ", 1)[-1] for t in texts}) == ["one", "two"]
    assert {p.max_tokens for p in wl if content(p).endswith("one")} == {3}


def numbers_file(tmp_path: Path, n: int) -> Path:
    return write(tmp_path, "".join(f'{{"prompt": "Tell me about the number {i}."}}\n' for i in range(n)))


def test_a_file_goes_out_top_to_bottom_pass_after_pass(tmp_path: Path) -> None:
    """As written, so a client replaying the file sends what lokal bench sends (issue 16), and across
    workloads of one run (`start`) the order continues; only re-sends carry tags."""
    path = numbers_file(tmp_path, 4)
    first = make_workload(3, prompts_file=path, seed=5)
    rest = make_workload(7, prompts_file=path, seed=5, start=3)
    texts = [content(p) for p in (*first, *rest)]
    assert texts[:4] == [f"Tell me about the number {i}." for i in range(4)]
    assert [t.split("] ", 1)[-1] for t in texts[4:]] == [f"Tell me about the number {i}." for i in (0, 1, 2, 3, 0, 1)]
    assert all(t.startswith("[") for t in texts[4:]) and rest.resent == 6
    assert "in file order" in first.describe() and not first.shuffled


def test_shuffle_sends_a_file_in_a_seeded_order(tmp_path: Path) -> None:
    path = numbers_file(tmp_path, 12)
    a, b, c = (make_workload(12, prompts_file=path, seed=s, shuffle=True) for s in (1, 1, 2))
    order = [content(p) for p in a]
    assert order == [content(p) for p in b] != [content(p) for p in c]
    assert sorted(order) == sorted(content(p) for p in make_workload(12, prompts_file=path))  # all, each once
    assert order != [content(p) for p in make_workload(12, prompts_file=path)]
    assert a.shuffled and "shuffled" in a.describe()


def test_shuffle_needs_a_file() -> None:
    for kwargs in ({"workload": "chat"}, {"prompt_tokens": 16}):
        with pytest.raises(WorkloadError, match="--shuffle applies to a --prompts file"):
            make_workload(2, shuffle=True, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"requests": 0}, "at least one request"),
        ({"requests": 1, "workload": "poems"}, "unknown workload 'poems'"),
        ({"requests": 1, "prompt_tokens": 3}, "at least 8"),
        ({"requests": 1, "workload": "synthetic"}, "needs --prompt-tokens"),
        ({"requests": 1, "prompt_tokens": 64, "prompts_file": "x.jsonl"}, "not both"),
    ],
)
def test_bad_workload_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(WorkloadError, match=message):
        make_workload(**kwargs)  # type: ignore[arg-type]


def test_probes_take_tagged_copies_of_the_next_prompts() -> None:
    """Warm-ups and cold-start probes send the prompts that come next, tagged, so the measured requests that
    then send them as written share no more than the template with anything sent before."""
    measured = make_workload(6, workload="chat", seed=2, start=3)
    warm = make_workload(2, workload="chat", seed=2, start=3, probe="w")
    cold = make_workload(2, workload="chat", seed=2, start=3, probe="cold")
    assert [content(p).split("] ", 1)[1] for p in warm] == [content(p) for p in measured][:2]
    assert [content(p)[:4] for p in warm] == ["[w3-", "[w4-"] and content(cold[0]).startswith("[cold3-")
    assert warm.resent == 0 and content(warm[0]) != content(cold[0]).replace("[cold", "[w")
    synthetic = make_workload(2, prompt_tokens=40, seed=1)
    assert content(make_workload(2, prompt_tokens=40, seed=1, probe="w")[0]) != content(synthetic[0])


def test_a_plan_refuses_shuffle_without_a_file_before_anything_runs() -> None:
    from lokal.bench.run import BenchError, BenchPlan

    with pytest.raises(BenchError, match="--shuffle applies to a --prompts file"):
        BenchPlan(models=("m",), shuffle=True)
    assert BenchPlan(models=("m",), shuffle=True, prompts_file="p.jsonl").shuffle


def test_the_grounded_set_hands_the_model_the_text_its_answer_reuses() -> None:
    wl = make_workload(8, workload="grounded", seed=0)
    texts = [content(p) for p in wl]
    assert len(set(texts)) == 8 and wl.resent == 0  # each task once before any repeats
    assert wl.max_tokens == WORKLOADS["grounded"].max_tokens == 128
    assert sum("Order 48213" in t for t in texts) == 2 and sum("planning group met" in t for t in texts) == 2
    assert sum("gale warning for coastal waters" in t for t in texts) == 1
    assert sum("def monthly_payment(" in t for t in texts) == 1
    assert sum("Harrowmere" in t for t in texts) == 2  # the long passage, and the tool result's station


def test_an_unknown_workload_names_the_built_in_sets() -> None:
    with pytest.raises(WorkloadError, match=r"choose one of: chat, long, grounded \(or give"):
        make_workload(1, workload="nope", seed=0)
