"""Build a Hugging Face model card from what lokal measured and what the author wrote.

Sources, and nothing else: the GGUF header and store entry (`ModelFacts`), saved `lokal bench`, `lokal audit`
and `lokal audit fairness` results (`Evidence`), and the author's `card.yaml` (`CardInfo`). Figures are copied
from the results with their intervals, N and scoring mode; statements only the author can make are taken from
`card.yaml` or marked with `render.TODO`. The front matter is huggingface_hub's own `ModelCardData` with
`EvalResult`s, so the card parses back with `huggingface_hub.ModelCard` to the same results.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from lokal._version import __version__
from lokal.audit.fairness import FairnessResult
from lokal.card import charts as card_charts
from lokal.card import eu_ai_act, evaluation, risks
from lokal.card.errors import CardError
from lokal.card.evidence import (
    Evidence,
    audit_eval_results,
    bench_eval_results,
    check_model_index,
    fairness_eval_results,
    select_audit,
    select_bench,
)
from lokal.card.info import CardInfo
from lokal.card.model import ModelFacts
from lokal.card.render import TODO, bullets, todo
from lokal.card.template import TEMPLATE
from lokal.report.document import Chart

CARD_VERSION = 1
#: `base_model:` values that mean "trained from scratch": shown in the body, kept out of the front matter.
_NO_BASE = {"none", "n/a", "-", "scratch"}


@dataclass(frozen=True)
class CardChart:
    chart: Chart
    height_in: float
    filename: str  # beside the card, referenced relatively from it


@dataclass(frozen=True)
class BuiltCard:
    card: ModelCard
    eval_results: list[EvalResult]
    charts: tuple[CardChart, ...] = ()
    warnings: tuple[str, ...] = ()
    evidence: tuple[Evidence, ...] = ()

    @property
    def text(self) -> str:
        text = str(self.card)  # Jinja drops the template's final newline; a text file ends with one
        return text if text.endswith("\n") else text + "\n"

    @property
    def todo_lines(self) -> list[int]:
        """1-based lines of the card still holding the author-gap marker."""
        return [i for i, line in enumerate(self.text.splitlines(), 1) if TODO in line]


# --- model details -----------------------------------------------------------------------------------------------


def _from_gguf(value: object) -> str:
    text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return f"{text} (from the GGUF metadata)"


def _languages(model: ModelFacts, info: CardInfo) -> list[str]:
    if info.language:
        return list(info.language)
    langs = model.gguf("languages")
    return [str(x) for x in langs] if isinstance(langs, list) else []


def _license_line(model: ModelFacts, info: CardInfo) -> str:
    if info.license:
        extra = ", ".join(x for x in (info.license_name, info.license_link) if x)
        return info.license + (f" ({extra})" if extra else "")
    if model.license_id:
        return _from_gguf(model.license_id)
    if model.license:
        first = next((line.strip() for line in model.license.splitlines() if line.strip()), "")
        return f"licence text recorded with the model, beginning “{first[:120]}”; " + todo(
            "the licence id for the front matter (card.yaml: license, with license_name and license_link)"
        )
    return todo("the licence (card.yaml: license)")


def _base_model(model: ModelFacts, info: CardInfo) -> tuple[str, str | None]:
    """(body text, front-matter value)."""
    if info.base_model:
        if info.base_model.strip().lower() in _NO_BASE:
            return "none (trained from scratch, as stated by the author)", None
        return info.base_model, info.base_model
    found = model.base_models()
    if found:
        return _from_gguf(found), None
    return todo("the model it was fine-tuned from, or `none` (card.yaml: base_model)"), None


def _model_description(model: ModelFacts, info: CardInfo) -> str:
    if info.authors:
        authors = ", ".join(info.authors)
    else:
        org = model.gguf("organization") or model.gguf("author")
        authors = _from_gguf(org) if org else todo("who developed the model (card.yaml: authors)")
    languages = _languages(model, info)
    if info.language:
        language = ", ".join(languages)
    else:
        language = _from_gguf(languages) if languages else todo("the languages it handles (card.yaml: language)")
    kind = "with a chat template" if model.chat_template else "without a chat template (completion only)"
    context = f"{model.context_length:,} tokens (trained context, GGUF)" if model.context_length else "not recorded"
    return bullets(
        [
            f"**Developed by:** {authors}",
            f"**Model type:** causal language model, `{model.architecture}` architecture, GGUF {kind}",
            f"**Parameters:** {model.parameters} ({model.parameter_count:,})",
            f"**Quantization:** {model.quantization}",
            f"**Context length:** {context}",
            f"**Language(s):** {language}",
            f"**License:** {_license_line(model, info)}",
            f"**Finetuned from model:** {_base_model(model, info)[0]}",
            f"**Weights file:** GGUF, {model.size / 1e6:,.1f} MB, `{model.digest}` (source: {model.source})",
        ]
    )


def _model_sources(model: ModelFacts, info: CardInfo) -> str:
    if info.repository:
        return bullets([f"**Repository:** {info.repository}"])
    for key in ("repo_url", "url", "source.huggingface.repository", "source.url"):
        value = model.gguf(key)
        if value:
            return bullets([f"**Repository:** {_from_gguf(value)}"])
    return bullets([f"**Repository:** {todo('where the model lives (card.yaml: repository)')}"])


# --- front matter ------------------------------------------------------------------------------------------------


def _card_data(
    model: ModelFacts,
    info: CardInfo,
    results: list[EvalResult],
    given: Sequence[tuple[str, Evidence]],
    now: datetime,
    audited: bool,
) -> ModelCardData:
    tags = list(dict.fromkeys(["gguf", "lokal", *(["bias-evaluation"] if audited else []), *info.tags]))
    return ModelCardData(
        model_name=model.name if results else None,  # only the model-index uses it
        eval_results=results or None,
        license=info.license or model.license_id,
        license_name=info.license_name,
        license_link=info.license_link,
        language=_languages(model, info) or None,
        base_model=_base_model(model, info)[1],
        pipeline_tag="text-generation",
        tags=tags,
        lokal={
            "card_version": CARD_VERSION,
            "lokal_version": __version__,
            "generated_at": now.isoformat(),
            "model": model.name,
            "model_digest": model.digest,
            "evidence": [
                {k: v for k, v in {"kind": kind, "file": e.source, "sha256": e.sha256}.items() if v}
                for kind, e in given
            ],
        },
    )


def _dedupe(items: Sequence[Evidence], warnings: list[str]) -> list[Evidence]:
    seen: set[str] = set()
    out = []
    for e in items:
        if e.sha256 and e.sha256 in seen:
            warnings.append(f"{e.source} was given twice; it is used once")
            continue
        if e.sha256:
            seen.add(e.sha256)
        out.append(e)
    return out


class _Charts:
    """Chart files of one card: `<prefix>.<chart id>.png`, unique, listed per result for the body to embed."""

    def __init__(self, prefix: str | None) -> None:
        self.prefix = prefix
        self.all: list[CardChart] = []
        self.by_owner: dict[int, list[tuple[str, str]]] = {}

    def add(self, owner: object, charts: Sequence[tuple[Chart, float]]) -> None:
        if self.prefix is None:
            return
        for chart, height in charts:
            filename = f"{self.prefix}.{chart.id}.png"
            if any(c.filename == filename for c in self.all):  # the same suite measured in two results
                filename = f"{self.prefix}.{chart.id}-{len(self.all)}.png"
            self.all.append(CardChart(chart, height, filename))
            self.by_owner.setdefault(id(owner), []).append((chart.alt, filename))


def build_card(
    model: ModelFacts,
    *,
    bench: Sequence[Evidence] = (),
    audits: Sequence[Evidence] = (),
    fairness: Sequence[Evidence] = (),
    info: CardInfo | None = None,
    now: datetime | None = None,
    chart_prefix: str | None = None,
) -> BuiltCard:
    """The card for `model` from the given evidence. `chart_prefix` (the card's file stem) turns interval charts
    on: they are referenced as `<prefix>.<chart>.png` beside the card, and written by `write_card`."""
    info = info or CardInfo()
    now = now or datetime.now(UTC)
    warnings: list[str] = []
    bench, audits, fairness = (_dedupe(x, warnings) for x in (bench, audits, fairness))

    perf = [select_bench(model, e, warnings) for e in bench]
    audit_results = [select_audit(model, e, warnings) for e in audits]
    fairness_results: list[FairnessResult] = [e.result for e in fairness]

    results: list[EvalResult] = []
    origins: list[str] = []
    for source, got in (
        *((p.evidence.source, bench_eval_results(p)) for p in perf),
        *((e.source, audit_eval_results(a, e)) for e, a in zip(audits, audit_results, strict=True)),
        *((e.source, fairness_eval_results(f, e)) for e, f in zip(fairness, fairness_results, strict=True)),
    ):
        results += got
        origins += [source] * len(got)
    check_model_index(results, origins)

    charts = _Charts(chart_prefix)
    for a in audit_results:
        for s in a.suites:
            charts.add(s, card_charts.suite_charts(s))
    for f in fairness_results:
        charts.add(f, card_charts.fairness_charts(f))

    given = [("bench", e) for e in bench] + [("audit", e) for e in audits] + [("fairness", e) for e in fairness]
    sources = ", ".join(f"`{e.source}`" for _, e in given)
    measured = (
        f" and {sources}. Figures are copied from those results with their intervals, N and scoring mode."
        if sources
        else ". No measurement was given."
    )
    provenance = (
        f"> Written by lokal {__version__} on {now:%Y-%m-%d} from the GGUF file's metadata{measured} What only "
        "the model's author can state comes from `card.yaml` or is marked for the author; `lokal card --check` "
        "lists what is still missing."
    )
    coverage = eu_ai_act.Coverage(model=model, info=info, audits=audit_results, perf=perf, fairness=fairness_results)
    card = ModelCard.from_template(
        _card_data(model, info, results, given, now, audited=bool(audit_results or fairness_results)),
        template_str=TEMPLATE,
        title=info.name or model.name,
        summary=info.summary or todo("one paragraph: what the model is and who made it (card.yaml: summary)"),
        provenance=provenance,
        model_description=_model_description(model, info),
        model_sources=_model_sources(model, info),
        direct_use=info.intended_use or todo("what the model is for, and for whom (card.yaml: intended_use)"),
        out_of_scope_use=info.out_of_scope
        or todo("uses the model must not be put to, and why (card.yaml: out_of_scope)"),
        limitations=bullets(info.limitations)
        if info.limitations
        else todo("the model's known limitations (card.yaml: limitations)"),
        critical_questions=risks.critical_questions(info, audit_results, fairness_results, perf),
        recommendations=info.recommendations
        or todo("what users should do about the risks above (card.yaml: recommendations)"),
        get_started=f'```sh\nlokal run {model.name} "Hello"\n```',
        training_data=info.training_data or todo("what the model was trained on (card.yaml: training_data)"),
        testing_data=evaluation.testing_data(audit_results, fairness_results, perf),
        performance=evaluation.performance(perf),
        bias=evaluation.bias(audit_results, charts.by_owner),
        fairness=evaluation.fairness(fairness_results, charts.by_owner),
        caveats=evaluation.caveats(audit_results, warnings),
        compute=evaluation.compute(audit_results, perf),
        citation=info.citation or "None given (card.yaml: citation).",
        card_authors=(f"{', '.join(info.authors)}; generated" if info.authors else "Generated")
        + f" with lokal {__version__} from the evidence listed above.",
        contact=info.contact or todo("where to send questions and reports of harm (card.yaml: contact)"),
        eu_ai_act=eu_ai_act.appendix(coverage),
    )
    return BuiltCard(
        card=card,
        eval_results=results,
        charts=tuple(charts.all),
        warnings=tuple(warnings),
        evidence=tuple(e for _, e in given),
    )


def write_card(built: BuiltCard, path: str | os.PathLike[str]) -> list[Path]:
    """Write the card and its charts beside it, each atomically; returns the files written, the card first.
    Charts go first, so a card on disk never points at a chart that is not there yet."""
    from lokal.files import write_atomic
    from lokal.report.charts import render_png

    target = Path(path)
    if target.is_dir():
        raise CardError(f"-o {target} is a folder; give the card's file name (README.md)")
    charts = [
        write_atomic(target.with_name(c.filename), render_png(c.chart, height_in=c.height_in)) for c in built.charts
    ]
    return [write_atomic(target, built.text), *charts]
