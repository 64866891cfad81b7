"""`lokal card`: Hugging Face model cards filled with what lokal measured, and a check of what a card lacks.

model.py      what the card says about the model (GGUF header, store entry)
info.py       `--info card.yaml`: what only the author can say (documented schema, validated)
evidence.py   saved bench / audit results -> model-index `EvalResult`s and table rows
build.py      the card itself (huggingface_hub ModelCard from template.py), written atomically
charts.py     interval charts of per-group bias figures
eu_ai_act.py  appendix mapping the evidence to EU AI Act Annex IV 2(g), 3 and Annex XI
check.py      `lokal card --check`: missing sections, licence, results, limitations, placeholders
"""

from lokal.card.build import BuiltCard, build_card, write_card
from lokal.card.check import CardCheck, Problem, check_card, check_text
from lokal.card.errors import CardError, CardIncomplete
from lokal.card.evidence import Evidence, load_audit, load_bench
from lokal.card.info import CardInfo, load_info
from lokal.card.model import ModelFacts

__all__ = [
    "BuiltCard",
    "CardCheck",
    "CardError",
    "CardIncomplete",
    "CardInfo",
    "Evidence",
    "ModelFacts",
    "Problem",
    "build_card",
    "check_card",
    "check_text",
    "load_audit",
    "load_bench",
    "load_info",
    "write_card",
]
