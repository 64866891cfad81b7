"""What `lokal bench` asks: built-in prompt sets (`prompt_sets`), synthetic prompts of a given length, or a
JSONL file; seeded.

A workload is fixed before the load starts (pre-built prompts keep tokenising and string work off the hot
path, as vLLM and llmperf do). Prompts go out as written: a workload is what a user wants measured, and the
prefixes its prompts share (a system prompt, the chat template, "Tell me about the number ") are what a server's
prompt cache would reuse in real traffic too. What a cache must not do is answer a prompt the benchmark itself
sends again (pitfall 7 in benchmarking.md: llama-server `cache_prompt`, Ollama's context reuse, vLLM's APC would
make a re-sent prompt look fast). So a run sends its set in one order across all its workloads (`start`): a
built-in set shuffled by the seed, a prompts file top to bottom as written (its order may be the point: the
turns of a conversation, a replayed trace; `shuffle=True` shuffles it too), and only a request that re-sends a
prompt the run already sent (the set is smaller than the run) starts with a tag unique to it; `Workload.resent`
counts those. `repeat_prefix=True` drops the tag to measure exactly the cached case. The tags come from the
seed, so the same seed gives the same prompts; a server that keeps many prefixes between runs (vLLM's APC) could
match a second run with the same seed, so change the seed (or restart the server) when comparing repeated runs
on such a server.

Why not tag every prompt, as lokal bench once did: the tag (about 12 tokens) made each prompt longer and cut its
shared prefix, so the server had more to prefill than the user's workload asks; measured against an independent
client on the same prompts file, TTFT read 2.4x and throughput 10 % lower (issue 16, docs/measure.md). The
order matters too, if less: shuffled, the same file made the server prefill 0.3 tokens more per request than
top to bottom, since neighbouring lines share more text.

Token counts here are of the prompt text only: the chat template adds a few tokens the server will count
(pitfall 3). They are exact when the caller passes `count_tokens` (the in-process engine can tokenise) and an
estimate otherwise; `Workload.token_count` says which, so a report can write "approx.".
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

from lokal.bench import prompt_sets
from lokal.bench.target import Prompt
from lokal.errors import LokalError

TokenCounter = Callable[[str], int]
TokenCount = Literal["tokenizer", "estimate"]


SHUFFLE_NEEDS_A_FILE = (
    "--shuffle applies to a --prompts file: built-in sets are always shuffled by --seed, and synthetic prompts are "
    "all different anyway"
)


class WorkloadError(LokalError, ValueError):
    """A workload that cannot be built: an unknown set, a bad length, or a malformed prompts file."""

    status_code = 400


#: Common English words that are one token each (with their leading space) in the vocabularies of the models
#: lokal runs (checked with SmolLM2's); synthetic prompts are built from them so ~1 token per word holds.
_FILLER_TEXT = """the of and to in is for on that with as it at by from this be or are an was have not but they his
    her she he we you all one there their when which will more about out up what so can has had some time
    would like into than only its other new some could people two them these then may first way been over
    year most made after also many well back how even after because any day good just water long great
    little very still old see each work through where much world own right life take place same small under
    never last hand high year most part home house left found light open end while city those three man young
    both car number book food tree river road sea sun wind stone bread table door window garden morning night
    green blue white black red warm cold slow fast quiet early late near far"""
_FILLER_WORDS: tuple[str, ...] = tuple(dict.fromkeys(_FILLER_TEXT.split()))

# Calibrated against SmolLM2's BPE vocabulary on the built-in sets (see estimate_tokens).
_SHORT_WORD = 8
_LETTERS_PER_TOKEN = 6


@dataclass(frozen=True)
class WorkloadSpec:
    """A built-in prompt set: what it is, and the output length it is meant to run with."""

    name: str
    description: str
    max_tokens: int


WORKLOADS: dict[str, WorkloadSpec] = {
    "chat": WorkloadSpec("chat", "short, varied user questions (about 25-40 tokens each)", max_tokens=64),
    "long": WorkloadSpec("long", "a passage of about 800 tokens followed by a question on it", max_tokens=128),
    "grounded": WorkloadSpec(
        "grounded", "answers that reuse the prompt: fields to JSON, edits, quotes, a tool result", max_tokens=128
    ),
    "synthetic": WorkloadSpec("synthetic", "filler text sized to --prompt-tokens", max_tokens=64),
}


@dataclass(frozen=True)
class Workload(Sequence[Prompt]):
    """The prompts of one run, one per request, in their seeded order, plus what a report says about them.

    Behaves as a read-only list of `Prompt` (len, index, iterate)."""

    name: str  # a key of WORKLOADS ("chat", "long", "grounded", "synthetic") or "file"
    prompts: tuple[Prompt, ...]
    seed: int
    token_count: TokenCount
    #: Smallest and largest prompt length in tokens (of the text, chat template not included).
    prompt_tokens_min: int
    prompt_tokens_max: int
    #: For synthetic prompts: the length asked for.
    prompt_tokens: int | None = None
    #: The output length the set is meant for (None for a file: the file's rows or the run's --max-tokens).
    max_tokens: int | None = None
    source: str | None = None  # the prompts file, if any
    repeat_prefix: bool = False
    #: Whether the set goes out in a seeded random order (built-in sets always; a file when asked).
    shuffled: bool = True
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: Requests that re-send a prompt the run already sent (a later pass over a set smaller than the run).
    resent: int = 0

    @property
    def approximate(self) -> bool:
        return self.token_count == "estimate"

    def describe(self) -> str:
        """One line for a report: "chat: built-in short questions, 26-37 prompt tokens (approx.)"."""
        approx = " (approx.)" if self.approximate else ""
        lo, hi = self.prompt_tokens_min, self.prompt_tokens_max
        size = f"{lo} prompt tokens" if lo == hi else f"{lo}-{hi} prompt tokens"
        what = {
            "chat": "built-in short questions",
            "long": "built-in passage + question",
            "synthetic": f"synthetic filler, {self.prompt_tokens} tokens asked",
            "file": f"prompts from {self.source}{', shuffled' if self.shuffled else ', in file order'}",
        }.get(self.name, self.name)
        cache = ", shared prefix (cache may answer)" if self.repeat_prefix else ""
        return f"{self.name}: {what}, {size}{approx}{cache}"

    def __len__(self) -> int:
        return len(self.prompts)

    @overload
    def __getitem__(self, index: int) -> Prompt: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Prompt]: ...

    def __getitem__(self, index: int | slice) -> Prompt | Sequence[Prompt]:
        return self.prompts[index]

    def __iter__(self) -> Iterator[Prompt]:
        return iter(self.prompts)


# --- token counting -------------------------------------------------------------------------------------------

_PIECE = re.compile(r"[A-Za-z]+|\d|[^\sA-Za-z\d]")


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate: one token per word of up to 8 letters, digit or punctuation mark, and one
    per 6 letters of longer words. On the built-in sets it is within about 15 % of SmolLM2's tokenizer (mean
    ratio 1.01); for other text and other vocabularies it is only an estimate, hence the "approx." label."""
    total = 0
    for piece in _PIECE.findall(text):
        long_word = piece.isalpha() and len(piece) > _SHORT_WORD
        total += math.ceil(len(piece) / _LETTERS_PER_TOKEN) if long_word else 1
    return total


# --- building prompts -----------------------------------------------------------------------------------------


def _tag(rng: random.Random, index: int | str) -> str:
    """A prefix unique to request `index` (and reproducible from the seed) so no prefix cache can match."""
    return f"[{index}-{rng.getrandbits(32):08x}] "


def _with_tag(messages: tuple[dict[str, str], ...], tag: str) -> tuple[dict[str, str], ...]:
    first = dict(messages[0])
    first["content"] = tag + first.get("content", "")
    return (first, *messages[1:])


def _user(text: str) -> tuple[dict[str, str], ...]:
    return ({"role": "user", "content": text},)


def _text_of(messages: Sequence[dict[str, str]]) -> str:
    return "\n".join(m.get("content", "") for m in messages)


def _filler(rng: random.Random, words: int) -> str:
    """`words` common words in sentences of 8-16 words: plausible-looking text, deterministic for the rng."""
    out: list[str] = []
    sentence = 0
    length = rng.randint(8, 16)
    for _ in range(words):
        word = rng.choice(_FILLER_WORDS)
        out.append(word.capitalize() if sentence == 0 else word)
        sentence += 1
        if sentence >= length:
            out[-1] += "."
            sentence = 0
            length = rng.randint(8, 16)
    return " ".join(out)


_SYNTH_HEAD = "Continue this text: "


def _synthetic_text(rng: random.Random, tag: str, target: int, count: TokenCounter) -> str:
    """A prompt of about `target` tokens: tag, an instruction and filler, the filler's length adjusted until
    `count` says it fits (at most a few tries: each filler word is about one token)."""
    pool = _filler(rng, target + 64)  # more words than needed; prefixes of it are tried
    pool_words = pool.split(" ")

    def text(n: int) -> str:
        return tag + _SYNTH_HEAD + " ".join(pool_words[:n])

    overhead = count(tag + _SYNTH_HEAD)
    n = max(1, min(len(pool_words), target - overhead))
    best_n, best_err = n, math.inf
    for _ in range(6):
        got = count(text(n))
        err = abs(got - target) + (0.5 if got > target else 0.0)  # on a tie, prefer the shorter
        if err < best_err:
            best_n, best_err = n, err
        if got == target:
            break
        n = max(1, min(len(pool_words), n + (target - got)))
    return text(best_n)


def _base_items(name: str) -> list[tuple[str, tuple[dict[str, str], ...]]]:
    if name == "chat":
        return [(f"chat-{i}", _user(q)) for i, q in enumerate(prompt_sets.CHAT_QUESTIONS)]
    if name == "grounded":
        return [(f"grounded-{i}", _user(text)) for i, text in enumerate(prompt_sets.GROUNDED)]
    if name == "synthetic":
        raise WorkloadError("the synthetic workload needs --prompt-tokens N")
    if name == "long":
        return [
            (
                f"long-{i}",
                _user(f"Read the text below, then answer the question.\n\n{prompt_sets.PASSAGE}\n\nQuestion: {q}"),
            )
            for i, q in enumerate(prompt_sets.PASSAGE_QUESTIONS)
        ]
    raise WorkloadError(
        f"unknown workload {name!r}; choose one of: {', '.join(w for w in WORKLOADS if w != 'synthetic')} "
        "(or give --prompt-tokens / --prompts)"
    )


def _cycle(size: int, n: int, rng: random.Random, *, shuffle: bool = True) -> list[int]:
    """`n` indexes into a set of `size`: pass after pass over the set, each pass shuffled anew (seeded) or, with
    `shuffle=False`, in the set's own order."""
    out: list[int] = []
    while len(out) < n:
        order = list(range(size))
        if shuffle:
            rng.shuffle(order)
        out.extend(order[: n - len(out)])
    return out


def make_workload(
    requests: int,
    *,
    workload: str = "chat",
    seed: int = 0,
    prompt_tokens: int | None = None,
    prompts_file: str | os.PathLike[str] | None = None,
    count_tokens: TokenCounter | None = None,
    repeat_prefix: bool = False,
    start: int = 0,
    probe: str = "",
    shuffle: bool = False,
) -> Workload:
    """The prompts for `requests` requests (warm-ups: a separate workload with `probe`).

    `prompts_file` (JSONL) wins over `prompt_tokens` (synthetic filler of about that many tokens), which wins
    over the built-in set named by `workload`. A built-in set goes out in one seeded order over the whole run,
    reshuffled for each further pass; a file goes out top to bottom, pass after pass, unless `shuffle` (then as
    a built-in set). `start` is how many requests the run already took from it (with the same seed), so this
    workload continues where the last one ended. Requests of the first pass send their prompt as written; later
    passes re-send prompts, each with a tag unique to it (unless
    `repeat_prefix`), so no two requests of a run send the same text. Synthetic prompts are unique anyway.

    `probe` (a short label such as "w" or "cold") makes unmeasured requests: warm-ups and cold-start probes take
    the prompts that come next, each tagged `[<probe><position>-<hex>]`, so the measured requests that then send
    those prompts as written find no cached copy of them. A probe workload is not counted in `resent`.
    """
    if requests < 1:
        raise WorkloadError(f"a workload needs at least one request, got {requests}")
    if prompts_file is not None and prompt_tokens is not None:
        raise WorkloadError("give either a prompts file or --prompt-tokens, not both")
    if shuffle and prompts_file is None:
        raise WorkloadError(SHUFFLE_NEEDS_A_FILE)
    rng = random.Random(f"{probe}:{seed}") if probe and prompt_tokens is not None else random.Random(seed)
    count: TokenCounter = count_tokens or estimate_tokens
    token_count: TokenCount = "tokenizer" if count_tokens is not None else "estimate"

    if prompt_tokens is not None:
        if prompt_tokens < 8:
            raise WorkloadError(f"--prompt-tokens must be at least 8, got {prompt_tokens}")
        prompts, lengths = [], []
        for i in range(requests):
            tag = "" if repeat_prefix else _tag(rng, i)
            # With repeat_prefix every prompt is the same text (seeded once), as a cache test wants.
            text_rng = random.Random(seed) if repeat_prefix else rng
            text = _synthetic_text(text_rng, tag, prompt_tokens, count)
            prompts.append(Prompt(id=f"synthetic-{i}", messages=_user(text)))
            if i < _MEASURED:
                lengths.append(count(text))
        return _finish(
            "synthetic",
            prompts,
            lengths,
            seed,
            token_count,
            prompt_tokens=prompt_tokens,
            max_tokens=WORKLOADS["synthetic"].max_tokens,
            repeat_prefix=repeat_prefix,
        )

    if prompts_file is not None:
        base = [(p.id, p.messages, p.max_tokens) for p in load_prompts_jsonl(prompts_file)]
        name, max_tokens, source = "file", None, str(prompts_file)
    else:
        base = [(pid, msgs, None) for pid, msgs in _base_items(workload)]
        name, max_tokens, source = workload, WORKLOADS[workload].max_tokens, None
    shuffled = shuffle or prompts_file is None

    if start < 0:
        raise WorkloadError(f"start must be 0 or more, got {start}")
    prompts, lengths, counted = [], [], set()
    resent = 0
    for i, b in enumerate(_cycle(len(base), start + requests, rng, shuffle=shuffled)[start:], start=start):
        pid, messages, own_max = base[b]
        again = i >= len(base) and not probe  # a later pass: this text already went out earlier in the run
        resent += again
        tagged = (again or bool(probe)) and not repeat_prefix
        sent = _with_tag(messages, _tag(random.Random(f"{probe}:{seed}:{i}"), f"{probe}{i}")) if tagged else messages
        prompts.append(Prompt(id=f"{pid}#{i}", messages=sent, max_tokens=own_max))
        if (b, again) not in counted:  # each distinct text once, as written and as re-sent (tags differ only)
            counted.add((b, again))
            lengths.append(count(_text_of(sent)))
    notes: tuple[str, ...] = ()
    if resent and repeat_prefix:
        notes = (f"{len(base)} distinct prompts repeated over {start + requests} requests, without unique tags",)
    return _finish(
        name,
        prompts,
        lengths,
        seed,
        token_count,
        max_tokens=max_tokens,
        source=source,
        repeat_prefix=repeat_prefix,
        shuffled=shuffled,
        notes=notes,
        resent=resent,
    )


#: Synthetic prompts all have about the asked length: counting the first few is enough for the report.
_MEASURED = 16


def _finish(
    name: str,
    prompts: list[Prompt],
    lengths: list[int],
    seed: int,
    token_count: TokenCount,
    **extra: Any,
) -> Workload:
    return Workload(
        name=name,
        prompts=tuple(prompts),
        seed=seed,
        token_count=token_count,
        prompt_tokens_min=min(lengths),
        prompt_tokens_max=max(lengths),
        **extra,
    )


# --- JSONL prompts files --------------------------------------------------------------------------------------

_ALLOWED_KEYS = ("prompt", "messages", "max_tokens", "id")
_ROLES = ("system", "user", "assistant", "tool")


def load_prompts_jsonl(path: str | os.PathLike[str]) -> list[Prompt]:
    """Read one prompt per line: {"prompt": "..."} or {"messages": [{"role": ..., "content": ...}, ...]},
    optionally with "max_tokens" and "id". Blank lines are skipped. Anything else is an error that names the
    file, the line number and what is wrong, so a user can fix line 37 instead of guessing."""
    source = Path(path)
    try:
        raw = source.read_bytes()
    except FileNotFoundError:
        raise WorkloadError(f"no prompts file at {source}") from None
    except OSError as exc:
        raise WorkloadError(f"cannot read prompts file {source}: {exc.strerror or exc}") from None
    prompts: list[Prompt] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        where = f"{source} line {number}"
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise WorkloadError(f"{where}: not UTF-8 text") from None
        if not text.strip():
            continue
        try:
            item = json.loads(text)
        except json.JSONDecodeError as exc:
            raise WorkloadError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        prompts.append(_parse_item(item, where, number))
    if not prompts:
        raise WorkloadError(f"{source} has no prompts (expected one JSON object per line)")
    return prompts


def _parse_item(item: Any, where: str, line: int) -> Prompt:
    if not isinstance(item, dict):
        raise WorkloadError(f"{where}: expected a JSON object, got {type(item).__name__}")
    unknown = sorted(set(item) - set(_ALLOWED_KEYS))
    if unknown:
        raise WorkloadError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(_ALLOWED_KEYS)})")
    if ("prompt" in item) == ("messages" in item):
        raise WorkloadError(f'{where}: needs exactly one of "prompt" or "messages"')
    if "prompt" in item:
        prompt = item["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise WorkloadError(f'{where}: "prompt" must be a non-empty string')
        messages = _user(prompt)
    else:
        messages = _parse_messages(item["messages"], where)
    max_tokens = item.get("max_tokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise WorkloadError(f'{where}: "max_tokens" must be a positive integer, got {max_tokens!r}')
    pid = item.get("id", f"line-{line}")
    if not isinstance(pid, str | int) or isinstance(pid, bool):
        raise WorkloadError(f'{where}: "id" must be a string or an integer')
    return Prompt(id=str(pid), messages=messages, max_tokens=max_tokens)


def _parse_messages(messages: Any, where: str) -> tuple[dict[str, str], ...]:
    if not isinstance(messages, list) or not messages:
        raise WorkloadError(f'{where}: "messages" must be a non-empty list')
    out: list[dict[str, str]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise WorkloadError(f'{where}: messages[{i}] must be an object with "role" and "content"')
        role, content = message.get("role"), message.get("content")
        if role not in _ROLES:
            raise WorkloadError(f"{where}: messages[{i}].role must be one of {', '.join(_ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise WorkloadError(f"{where}: messages[{i}].content must be a string")
        out.append({"role": role, "content": content})
    if all(not m["content"].strip() for m in out):
        raise WorkloadError(f"{where}: every message is empty")
    return tuple(out)
