"""Thinking: models whose chat template has a reasoning section (`<think>…</think>`: Qwen 3, DeepSeek R1 and
their distills, and the like) write their reasoning first; Ollama gives it apart from the answer
(`message.thinking`, `thinking`), OpenAI-compatible servers as `reasoning_content`.

What this module holds, all pure:

- `lokal.store.template_facts.can_think(template)`: the model thinks when its template has both tags (Ollama's
  test for GGUF templates).
- `requested(think)` / `from_reasoning_effort(effort)`: a request's `think` (true, false, or a level) and
  OpenAI's `reasoning_effort`, as one value: a level, False (off), or None (unset: on, for a model that thinks).
- `template_variables(level)`: what a template reads to switch thinking on or off (`enable_thinking`, as
  Qwen 3's does; `reasoning_effort`, as others do).
- `Reading` and `ThinkingWatcher`: how an answer is split. When the rendered prompt ends with the open tag,
  the answer starts inside the reasoning (`Reading.opens`); otherwise it is reasoning only if it opens with the
  tag. Whitespace after either tag is eaten, as Ollama's parser does. A streamed answer passes its reasoning
  and its text on as they come, holding back only a tail that may become a tag.
- `after_thinking(trigger)` and `Reading` for the grammar: a tool call comes after the reasoning, so a lazy
  grammar's trigger must not fire inside it, and a grammar that holds the whole answer lets it through first.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from lokal.errors import InvalidOptions
from lokal.store.template_facts import THINK_CLOSE, THINK_OPEN

OPEN, CLOSE = THINK_OPEN, THINK_CLOSE
#: Ollama's levels; `think: true` is "medium".
LEVELS = ("low", "medium", "high", "max")
#: OpenAI's `reasoning_effort` as Ollama maps it to a level (None: thinking off).
_EFFORTS: dict[str, str | None] = {
    "none": None,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "max",
    "max": "max",
}


def requested(think: Any) -> str | Literal[False] | None:
    """A request's `think`: None (unset), False (off), or a level ("medium" for true)."""
    if think is None or think is False:
        return think
    if think is True:
        return "medium"
    if isinstance(think, str) and think in LEVELS:
        return think
    raise InvalidOptions(f"invalid think value: {think!r} (expected true, false, or one of {', '.join(LEVELS)})")


def from_reasoning_effort(effort: Any) -> str | Literal[False] | None:
    """OpenAI's `reasoning_effort` as a `think` value, mapped as Ollama maps it ("none" is off)."""
    if effort is None:
        return None
    if not isinstance(effort, str) or effort not in _EFFORTS:
        raise InvalidOptions(f"invalid reasoning_effort: {effort!r} (expected one of {', '.join(_EFFORTS)})")
    return _EFFORTS[effort] or False


def template_variables(level: str | None) -> dict[str, Any]:
    """What the template is given: thinking on (at `level`) or off."""
    return {"enable_thinking": level is not None, "reasoning_effort": level or "none"}


@dataclasses.dataclass(frozen=True)
class Reading:
    """How a thinking answer is read: `opens`, the prompt ends with the open tag (the answer starts inside the
    reasoning)."""

    opens: bool = False

    @classmethod
    def of_prompt(cls, prompt: str) -> Reading:
        return cls(opens=prompt.rstrip().endswith(OPEN))

    def after_thinking(self, trigger: str) -> str:
        """A lazy grammar's trigger (a pattern on the whole output, from `^`) that fires only after the reasoning:
        past the close tag when the answer starts inside it; else past a leading reasoning section, if any."""
        rest = trigger.removeprefix("^")
        if self.opens:
            return rf"^[\s\S]*?{CLOSE}\s*" + rest
        return rf"^(?:\s*{OPEN}[\s\S]*?{CLOSE}\s*|(?!\s*{OPEN}))" + rest


def split(text: str, reading: Reading) -> tuple[str, str]:
    """A finished answer as (reasoning, text)."""
    watcher = ThinkingWatcher(reading)
    thinking, content = watcher.feed(text)
    more_thinking, more_content = watcher.finish()
    return thinking + more_thinking, content + more_content


class ThinkingWatcher:
    """Splits a streamed answer into reasoning and text as the pieces come (see the module's docstring)."""

    def __init__(self, reading: Reading) -> None:
        self._state = "thinking" if reading.opens else "start"
        self._eat_space = reading.opens
        self._held = ""

    def feed(self, piece: str) -> tuple[str, str]:
        """(reasoning, text) to pass on now for `piece`."""
        self._held += piece
        thinking = content = ""
        while self._held:
            if self._state == "start":
                lead = self._held.lstrip()
                if not lead or (OPEN.startswith(lead) and lead != OPEN):
                    break  # whitespace, or what may still become the open tag
                if lead.startswith(OPEN):
                    self._held, self._state, self._eat_space = lead[len(OPEN) :], "thinking", True
                else:
                    self._state = "text"
            elif self._state == "thinking":
                if self._eat_space:
                    self._held = self._held.lstrip()
                    if not self._held:
                        break
                    self._eat_space = False
                end = self._held.find(CLOSE)
                if end >= 0:
                    thinking += self._held[:end]
                    self._held, self._state = self._held[end + len(CLOSE) :], "after"
                    continue
                keep = _tag_prefix_length(self._held, CLOSE)
                thinking += self._held[: len(self._held) - keep]
                self._held = self._held[len(self._held) - keep :]
                break
            elif self._state == "after":
                self._held = self._held.lstrip()
                if self._held:
                    self._state = "text"
            else:
                content += self._held
                self._held = ""
        return thinking, content

    def finish(self) -> tuple[str, str]:
        """At the end: (reasoning, text) still held. Reasoning that never closed (a length limit) stays reasoning."""
        held, self._held = self._held, ""
        if self._state == "thinking":
            return held, ""
        if self._state == "after":
            return "", ""
        return "", held


def _tag_prefix_length(text: str, tag: str) -> int:
    for n in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


def text_without_close_gbnf(prefix: str = "think") -> str:
    """GBNF rules `<prefix>-0` ... for any text that does not contain the close tag: the tag's automaton (after
    KMP), one rule per how much of the tag the text ends with. The tag has no border (no proper prefix that is
    also a suffix), so any char that breaks a partial match goes back to state 0, or to 1 for `<`."""
    rules = []
    for k, char in enumerate(CLOSE):
        alternatives = ['""', f"[^{_gbnf_class(char + CLOSE[0])}] {prefix}-0"]
        if char != CLOSE[0]:
            alternatives.append(f'"{CLOSE[0]}" {prefix}-1')
        if k + 1 < len(CLOSE):
            alternatives.append(f'"{_gbnf_literal(char)}" {prefix}-{k + 1}')
        rules.append(f"{prefix}-{k} ::= " + " | ".join(alternatives))
    return "\n".join(rules)


def _gbnf_class(chars: str) -> str:
    return "".join("\\" + c if c in "]\\^-" else c for c in dict.fromkeys(chars))


def _gbnf_literal(char: str) -> str:
    return "\\" + char if char in '"\\' else char
