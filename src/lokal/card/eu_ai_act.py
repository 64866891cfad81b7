"""The card's appendix: which evidence in the card speaks to which point of the EU AI Act's technical
documentation (Regulation (EU) 2024/1689), and what is still missing.

Points covered (see `../shared/ref/responsible-ai.md` §4.4): Annex IV point 2(g) (validation and testing
procedures, metrics including potentially discriminatory impacts, dated and signed test logs) and point 3
(capabilities and limitations, degrees of accuracy for specific persons or groups, foreseeable risks, human
oversight, input data) for AI systems; Annex XI section 1 (and section 2 for models with systemic risk) for
general-purpose AI models. It is evidence, not certification: a table cannot decide whether a system is
high-risk or a model is a GPAI model, and lokal signs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lokal.audit.fairness import FairnessResult
from lokal.audit.result import AuditResult
from lokal.card.evidence import PerfRun, labelled_figures, suite_title
from lokal.card.info import CardInfo
from lokal.card.model import ModelFacts
from lokal.card.render import table

DISCLAIMER = (
    "**Evidence, not certification.** This appendix points from the documentation items of the EU AI Act "
    "(Regulation (EU) 2024/1689) to the evidence in this card. It does not make a model or a system compliant, "
    "does not decide whether the model is a general-purpose AI model or part of a high-risk AI system, and does "
    "not replace the provider's own technical documentation, risk-management system or conformity assessment. "
    "The measurements describe this GGUF file as run by lokal, not a deployed system."
)


@dataclass(frozen=True)
class Coverage:
    """What the card holds, as the appendix needs it."""

    model: ModelFacts
    info: CardInfo
    audits: Sequence[AuditResult]
    perf: Sequence[PerfRun]
    fairness: Sequence[FairnessResult] = ()


def _join(items: Sequence[str], empty: str) -> str:
    return "; ".join(items) if items else empty


def _suites(cov: Coverage) -> list[str]:
    return list(dict.fromkeys(f"{suite_title(s)} ({s.scoring})" for a in cov.audits for s in a.suites))


def _group_figures(cov: Coverage) -> int:
    figures = labelled_figures(cov.audits, cov.fairness)
    return sum(1 for _, m in figures if m.group and m.value is not None)


def rows(cov: Coverage) -> list[tuple[str, str, str, str]]:
    """(provision, what it asks, evidence in this card, still needed) for each point."""
    info, model = cov.info, cov.model
    suites = _suites(cov)
    runs = [a.created_at for a in cov.audits] + [f.created_at for f in cov.fairness]
    dates = sorted({d.strftime("%Y-%m-%d") for d in [*runs, *(p.result.created_at for p in cov.perf)]})
    tested = []
    if suites:
        tested.append(f"bias probes: {', '.join(suites)}, each figure with a bootstrap interval and N (Evaluation)")
        tested.append("datasets named with file sha256 and items scored (Testing Data)")
    if cov.fairness:
        tested.append("group fairness of labelled predictions: per-group accuracy and error rates, gaps (fairlearn)")
    if cov.perf:
        tested.append("inference latency and throughput (Performance)")
    if dates:
        tested.append(f"dated runs: {', '.join(dates)}; raw model outputs kept as JSONL by lokal audit")
    needed_2g = ["test logs and reports signed by the responsible persons (lokal dates them, it signs nothing)"]
    if not suites and not cov.fairness:
        needed_2g.insert(0, "any measurement of potentially discriminatory impacts (run lokal audit)")
    needed_2g.append("accuracy and robustness on the system's intended task (not measured by lokal)")

    groups = _group_figures(cov)
    evidence_3 = []
    if groups:
        evidence_3.append(f"{groups} per-group figure{'s' if groups != 1 else ''} with intervals (Evaluation)")
    if info.limitations:
        evidence_3.append(f"{len(info.limitations)} limitations stated by the author")
    if info.risks:
        evidence_3.append("foreseeable risks stated by the author")
    if info.human_oversight:
        evidence_3.append("human oversight measures stated by the author")
    if model.context_length:
        evidence_3.append(f"input: text up to {model.context_length:,} tokens (GGUF context length)")
    needed_3 = [
        label
        for label, present in (
            ("degrees of accuracy for the groups the system is used on (run lokal audit)", groups > 0),
            ("limitations (card.yaml: limitations)", bool(info.limitations)),
            ("foreseeable unintended outcomes and risks (card.yaml: risks)", bool(info.risks)),
            ("human oversight measures (card.yaml: human_oversight)", bool(info.human_oversight)),
        )
        if not present
    ]
    needed_3.append("expected accuracy for the intended purpose (task-specific evaluation)")

    licence = info.license or model.license_id or (model.license and "recorded in the GGUF (see Model Details)")
    evidence_xi1 = [
        f"architecture {model.architecture}, {model.parameters} parameters ({model.parameter_count:,}), "
        f"{model.quantization} GGUF (Model Details)",
        "modality: text in, text out",
    ]
    if licence:
        evidence_xi1.append(f"licence: {licence}")
    if info.intended_use:
        evidence_xi1.append("intended tasks (Uses)")
    if info.out_of_scope:
        evidence_xi1.append("out-of-scope uses (Uses)")
    needed_xi1 = [
        label
        for label, present in (
            ("intended tasks and the AI systems it can be integrated in (card.yaml: intended_use)", info.intended_use),
            ("acceptable use policy (card.yaml: out_of_scope)", info.out_of_scope),
            ("licence (card.yaml: license)", licence),
        )
        if not present
    ]
    needed_xi1.append("date of release and methods of distribution")

    evidence_xi2 = []
    if info.training_data:
        evidence_xi2.append("training data described by the author (Training Data)")
    if suites:
        evidence_xi2.append("bias in the model's outputs probed on the testing data above")
    needed_xi2 = []
    if not info.training_data:
        needed_xi2.append("training data: type, provenance, curation (card.yaml: training_data)")
    needed_xi2.append("methods used to detect identifiable biases in the training data")
    needed_xi2.append("training compute and energy consumption (lokal measures inference only)")

    evidence_sys = []
    if suites:
        evidence_sys.append(
            "evaluation results, metrics and scoring method per figure; caveats on what they do not show"
        )
    needed_sys = ["evaluation strategy and criteria; adversarial testing (red teaming) — not done by lokal"]

    return [
        (
            "Annex IV 2(g)",
            "Validation and testing procedures and data; metrics for accuracy, robustness and potentially "
            "discriminatory impacts; dated and signed test logs and reports",
            _join(tested, "none in this card"),
            _join(needed_2g, "—"),
        ),
        (
            "Annex IV 3",
            "Capabilities and limitations in performance, including degrees of accuracy for specific persons or "
            "groups; foreseeable unintended outcomes and risks (health, safety, fundamental rights, "
            "discrimination); human oversight; input data specifications",
            _join(evidence_3, "none in this card"),
            _join(needed_3, "—"),
        ),
        (
            "Annex XI 1.1 (GPAI)",
            "Tasks and systems it can be integrated in; acceptable use policies; release and distribution; "
            "architecture and number of parameters; modality and formats of inputs and outputs; licence",
            _join(evidence_xi1, "none in this card"),
            _join(needed_xi1, "—"),
        ),
        (
            "Annex XI 1.2 (GPAI)",
            "Design and training process; data for training, testing and validation, their provenance and "
            "curation, and methods to detect identifiable biases; training compute; energy consumption",
            _join(evidence_xi2, "none in this card"),
            _join(needed_xi2, "—"),
        ),
        (
            "Annex XI 2 (GPAI with systemic risk)",
            "Evaluation strategies with results, criteria, metrics and the method for identifying limitations; "
            "adversarial testing",
            _join(evidence_sys, "none in this card"),
            _join(needed_sys, "—"),
        ),
    ]


def appendix(cov: Coverage) -> str:
    return (
        DISCLAIMER
        + "\n\n"
        + table(("Provision", "What it asks for", "Evidence in this card", "Still needed"), rows(cov))
    )
