"""The Jinja2 template of a lokal model card, rendered by `huggingface_hub.ModelCard.from_template`.

Its headings follow huggingface_hub's default model-card template (Model Details, Uses, Bias, Risks, and
Limitations, Evaluation...), so the card reads like any other on the Hub and `lokal card --check` can check
cards lokal did not write. Every block is Markdown prepared in `lokal.card.build`; the template only orders
them. It lives in a module rather than a .md file so it ships with the package without packaging data files.
"""

from __future__ import annotations

TEMPLATE = """\
---
{{ card_data }}
---

# Model Card for {{ title }}

{{ summary }}

{{ provenance }}

## Model Details

### Model Description

{{ model_description }}

### Model Sources

{{ model_sources }}

## Uses

### Direct Use

{{ direct_use }}

### Out-of-Scope Use

{{ out_of_scope_use }}

## Bias, Risks, and Limitations

### Limitations

{{ limitations }}

### Critical Questions

{{ critical_questions }}

### Recommendations

{{ recommendations }}

## How to Get Started with the Model

{{ get_started }}

## Training Details

### Training Data

{{ training_data }}

## Evaluation

### Testing Data, Factors & Metrics

{{ testing_data }}

### Results

#### Performance

{{ performance }}

#### Bias

{{ bias }}

#### Group Fairness

{{ fairness }}

### Caveats

{{ caveats }}

## Technical Specifications

### Compute Infrastructure

{{ compute }}

## Citation

{{ citation }}

## Model Card Authors

{{ card_authors }}

## Model Card Contact

{{ contact }}

## Appendix: EU AI Act Evidence Map

{{ eu_ai_act }}
"""
