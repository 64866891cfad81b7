"""`lokal card --check README.md`: what a model card still lacks before it can be published.

Works on any Hugging Face model card, not only lokal's: the required sections are looked up by the headings
of huggingface_hub's default template (and common variants), the front matter is read with
`huggingface_hub.ModelCard`. Missing items:

- front matter: none, or unreadable (invalid YAML or `model-index`);
- licence: no `license` (or `license_name`) in the front matter;
- evaluation results: no `model-index` results;
- sections: Model Details, Uses, Out-of-Scope Use, Bias, Risks, and Limitations, Evaluation;
- intended use and limitations: present but empty, or still a placeholder;
- placeholders: every line still holding "TODO" or huggingface_hub's "[More Information Needed]".
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import ModelCard

from lokal.card.errors import CardError

#: huggingface_hub's placeholder for an unfilled template variable.
HF_PLACEHOLDER = "[More Information Needed]"
_PLACEHOLDER_LINE = re.compile(r"\bTODO\b|" + re.escape(HF_PLACEHOLDER))
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_FRONT_MATTER = re.compile(r"^(\s*---[\r\n]+)([\S\s]*?)([\r\n]+---(\r\n|\n|$))")


def _norm(title: str) -> str:
    text = title.lower().replace("&", "and").replace("[optional]", "")
    text = re.sub(r"[^a-z0-9]+", " ", text)
    return " ".join(text.split())


#: (id, heading to add, accepted headings). A heading matches when its normalised text is one of these.
SECTIONS: tuple[tuple[str, str, frozenset[str]], ...] = tuple(
    (key, title, frozenset(_norm(a) for a in aliases))
    for key, title, aliases in (
        ("model-details", "Model Details", ("Model Details", "Model Description")),
        ("uses", "Uses", ("Uses", "Intended Use", "Intended Uses", "Direct Use", "Intended Use and Limitations")),
        ("out-of-scope", "Out-of-Scope Use", ("Out-of-Scope Use", "Out-of-Scope Uses", "Out of Scope")),
        (
            "limitations",
            "Bias, Risks, and Limitations",
            ("Bias, Risks, and Limitations", "Limitations", "Risks and Limitations", "Bias and Limitations"),
        ),
        ("evaluation", "Evaluation", ("Evaluation", "Evaluation Results", "Results")),
    )
)
#: Sections whose own text must be filled in (most specific heading first).
CONTENT = (
    ("intended-use", "intended use", ("Direct Use", "Intended Use", "Intended Uses", "Uses")),
    ("limitations-text", "limitations", ("Limitations", "Bias, Risks, and Limitations", "Risks and Limitations")),
)


@dataclass(frozen=True)
class Problem:
    item: str  # "license", "model-index", "section:uses", "intended-use", "placeholder"...
    message: str
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"item": self.item, "message": self.message, "line": self.line}


@dataclass(frozen=True)
class CardCheck:
    path: str
    problems: tuple[Problem, ...]
    eval_results: int

    @property
    def complete(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "complete": self.complete,
            "eval_results": self.eval_results,
            "missing": [p.to_dict() for p in self.problems],
        }


@dataclass(frozen=True)
class _Heading:
    level: int
    title: str
    line: int  # 1-based, in the file
    own: str  # text up to the next heading of any level


def _headings(lines: list[str], start: int) -> list[_Heading]:
    found: list[tuple[int, str, int]] = []
    fenced = False
    for i in range(start, len(lines)):
        if _FENCE.match(lines[i]):
            fenced = not fenced
            continue
        m = None if fenced else _HEADING.match(lines[i])
        if m:
            found.append((len(m.group(1)), m.group(2), i))
    out = []
    for k, (level, title, i) in enumerate(found):
        end = found[k + 1][2] if k + 1 < len(found) else len(lines)
        out.append(_Heading(level, title, i + 1, "\n".join(lines[i + 1 : end])))
    return out


def _empty(text: str) -> bool:
    body = _COMMENT.sub("", text).strip()
    return not body or body == HF_PLACEHOLDER or bool(_PLACEHOLDER_LINE.search(body))


def check_text(text: str, path: str = "README.md") -> CardCheck:
    problems: list[Problem] = []
    lines = text.splitlines()
    match = _FRONT_MATTER.search(text)
    body_start = match.group(0).count("\n") if match and match.start() == 0 else 0
    data: Any = None
    if body_start == 0:
        problems.append(Problem("front-matter", "no YAML front matter (licence, model-index)", 1))
    else:
        try:
            data = ModelCard(text).data
        except (ValueError, yaml.YAMLError) as exc:
            first = next((x for x in str(exc).splitlines() if x.strip()), type(exc).__name__)
            problems.append(Problem("front-matter", f"front matter cannot be read: {first}", 1))
            try:  # keep what can be read (an invalid model-index still leaves the licence readable)
                data = ModelCard(text, ignore_metadata_errors=True).data
            except (ValueError, yaml.YAMLError):
                data = None
    if data is None or not (data.get("license") or data.get("license_name")):
        problems.append(Problem("license", "no licence in the front matter (license: <id>)"))
    eval_results = len(data.eval_results or []) if data is not None else 0
    if not eval_results:
        problems.append(Problem("model-index", "no evaluation results (model-index) in the front matter"))

    headings = _headings(lines, body_start)
    by_norm: dict[str, _Heading] = {}
    for h in headings:
        by_norm.setdefault(_norm(h.title), h)
    for key, title, aliases in SECTIONS:
        if not any(a in by_norm for a in aliases):
            problems.append(Problem(f"section:{key}", f"no '{title}' section"))
    for key, label, candidates in CONTENT:
        heading = next((by_norm[_norm(c)] for c in candidates if _norm(c) in by_norm), None)
        if heading is not None and _empty(heading.own):
            problems.append(Problem(key, f"the {label} under '{heading.title}' is not written yet", heading.line))

    for i, line in enumerate(lines[body_start:], body_start + 1):
        if _PLACEHOLDER_LINE.search(line):
            problems.append(Problem("placeholder", line.strip()[:160], i))
    return CardCheck(path=path, problems=tuple(problems), eval_results=eval_results)


def check_card(path: str | os.PathLike[str]) -> CardCheck:
    """Read the card at `path` and list what it lacks."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CardError(f"no model card at {source}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CardError(f"cannot read {source}: {exc}") from None
    return check_text(text, str(source))
