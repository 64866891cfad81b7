"""`--info card.yaml`: what only the model's author can say, in a small documented YAML schema.

A card built from measurements alone cannot know what the model is for, what it must not be used for, or what
its limitations are; lokal never invents that text. The author writes it here (every field optional); whatever
is missing becomes a section clearly marked for the author, which `lokal card --check` lists.

Unknown keys are an error (with the closest known key suggested), because a misspelt `limitatons:` silently
dropped would make a card claim that no limitations were stated. Errors name the file and the line.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lokal.card.errors import CardError

__all__ = ["EXAMPLE_INFO", "CardInfo", "load_info"]


class CardInfo(BaseModel):
    """The author's statements. Text fields are Markdown; list fields take one string or a list of strings."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(None, description="display name for the card title (default: the model's name)")
    summary: str | None = Field(None, description="one paragraph: what the model is")
    authors: list[str] = Field(default_factory=list, description="who developed the model")
    contact: str | None = Field(None, description="where to send questions and reports of harm")
    license: str | None = Field(None, description="Hugging Face licence id (apache-2.0, mit, other...)")
    license_name: str | None = Field(None, description="name of a licence that has no id (with license: other)")
    license_link: str | None = Field(None, description="link to that licence")
    language: list[str] = Field(default_factory=list, description="ISO 639 codes of the languages it handles")
    base_model: str | None = Field(None, description="Hugging Face id of the model it was fine-tuned from")
    repository: str | None = Field(None, description="where the model and its code live")
    intended_use: str | None = Field(None, description="what the model is for, and for whom")
    out_of_scope: str | None = Field(None, description="uses it must not be put to, and why")
    limitations: list[str] = Field(default_factory=list, description="known technical and social limitations")
    risks: list[str] = Field(default_factory=list, description="what could go wrong when it is used as intended")
    affected_groups: list[str] = Field(default_factory=list, description="who could be harmed, and how")
    training_data: str | None = Field(None, description="what it was trained on; how representative that is")
    recommendations: str | None = Field(None, description="what users should do about the risks")
    human_oversight: str | None = Field(None, description="how people oversee its outputs (EU AI Act Annex IV 3)")
    citation: str | None = Field(None, description="BibTeX or a plain reference")
    tags: list[str] = Field(default_factory=list, description="extra Hugging Face tags")

    @field_validator("authors", "language", "limitations", "risks", "affected_groups", "tags", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        """`limitations: one sentence` is as natural as a list; both mean the same."""
        if value is None:
            return []
        if isinstance(value, str):
            return [value] if value.strip() else []
        return value

    @field_validator("authors", "language", "limitations", "risks", "affected_groups", "tags")
    @classmethod
    def _no_blank_items(cls, value: list[str]) -> list[str]:
        if any(not item.strip() for item in value):
            raise ValueError("list items must not be empty")
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_not_text(cls, value: Any) -> Any:
        """YAML reads `license: 2.0` or `name: yes` as a number or a boolean; say so instead of guessing."""
        if isinstance(value, bool | int | float):
            raise ValueError(f"expected text, got {type(value).__name__} {value!r} (quote it)")
        return value

    @field_validator(
        "name",
        "summary",
        "contact",
        "license",
        "license_name",
        "license_link",
        "base_model",
        "repository",
        "intended_use",
        "out_of_scope",
        "training_data",
        "recommendations",
        "human_oversight",
        "citation",
    )
    @classmethod
    def _blank_is_missing(cls, value: str | None) -> str | None:
        return value or None


#: A complete example, printed by `lokal card --info-example` (and checked by the tests to validate).
EXAMPLE_INFO = """\
# card.yaml: what only the model's author can say (every field is optional; Markdown allowed).
# Missing fields become sections marked for the author, which `lokal card --check` lists.
name: SmolLM2 135M Instruct (Q4_1 GGUF)
summary: A 135M-parameter instruction-tuned model, quantized to 4 bits for CPU inference.
authors: [HuggingFaceTB]
contact: https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct/discussions
license: apache-2.0
# license_name: My Licence 1.0       (only with license: other)
# license_link: https://example.org/licence
language: [en]
base_model: HuggingFaceTB/SmolLM2-135M-Instruct
repository: https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct
intended_use: >
  Short English chat and text rewriting on machines without a GPU, by developers prototyping offline.
out_of_scope: >
  Decisions about people (hiring, credit, health, law enforcement); factual answers without verification;
  languages other than English.
limitations:
  - "Small model: frequent factual errors and unstable reasoning."
  - English only; quality in other languages was not evaluated.
risks:
  - Stereotyped completions about occupations and groups, repeated to end users.
affected_groups:
  - People described by the model's output, where it reproduces stereotypes about them.
training_data: Public web, code and synthetic data (see the base model's card); not audited here.
recommendations: Keep a person in the loop for anything shown to the public; re-run lokal audit after fine-tuning.
human_oversight: Outputs are drafts reviewed by a person before use.
citation: "@misc{allal2025smollm2, title={SmolLM2}, year={2025}}"
tags: [chat]
"""


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the YAML node at `loc` (a pydantic error location), or of its nearest parent."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if match is None:  # an unknown key: point at the key itself
                key = next((k for k, _ in node.value if getattr(k, "value", None) == part), None)
                return key.start_mark.line + 1 if key is not None else line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def _message(error: dict[str, Any]) -> str:
    field = ".".join(str(p) for p in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        known = list(CardInfo.model_fields)
        close = difflib.get_close_matches(str(error["loc"][0]), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known fields: {', '.join(known)}"
        return f"unknown field {field!r}{hint}"
    msg = str(error["msg"]).removeprefix("Value error, ")
    return f"{field}: {msg}"


def parse_info(text: str, source: str = "card info") -> CardInfo:
    """Validate card-info YAML text; errors are one line naming `source` and the line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CardError(f"{where}: not valid YAML ({problem})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise CardError(
            f"{source}: expected a mapping of fields (name: ..., intended_use: ...), got {type(raw).__name__}"
        )
    try:
        return CardInfo.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        line = _line_of(node, tuple(first["loc"]))
        where = f"{source}:{line}" if line else source
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise CardError(f"{where}: {_message(dict(first))}{suffix}") from None


def load_info(path: str | os.PathLike[str]) -> CardInfo:
    """Read `--info card.yaml`."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CardError(f"no card info file at {source}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CardError(f"cannot read {source}: {exc}") from None
    return parse_info(text, str(source))
