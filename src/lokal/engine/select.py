"""Whether the transformers engine can run here: the packages of the `hf` extra, checked without importing them.

The engine names are `lokal.engine_names`; which engine runs a model is `lokal.store.engine_choice`.
"""

from __future__ import annotations

import importlib.util

from lokal.errors import EngineUnavailable

#: What `pip install 'lokal[hf]'` brings; checked without importing (importing torch takes seconds).
HF_PACKAGES = ("torch", "transformers", "accelerate")
HF_INSTALL_HINT = (
    "install the transformers engine with: pip install 'lokal[hf]' "
    "(or ./install.sh --hf; on a CPU-only machine install torch's CPU build first)"
)


def missing_hf_packages() -> list[str]:
    """The packages of the `hf` extra that are not installed (empty when the transformers engine can run)."""
    return [name for name in HF_PACKAGES if importlib.util.find_spec(name) is None]


def require_transformers(model_name: str) -> None:
    missing = missing_hf_packages()
    if missing:
        raise EngineUnavailable(
            f"'{model_name}' needs the transformers engine, but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed: {HF_INSTALL_HINT}"
        )
