"""Well-known names people type after `ollama pull`, mapped to public GGUF repositories on Hugging Face.

Why: `lokal pull tinyllama` should just work. Ollama's own registry is not reachable (and its blobs are
not plain files), but for every popular small model there is a well-known GGUF repository on the hub
with the same weights. `quant` picks the file (matched against file names, case-insensitively); `file`
is the name we expect, used only to tell an offline user exactly what would be fetched.
"""

from __future__ import annotations

import dataclasses

from lokal.store.names import ModelName


@dataclasses.dataclass(frozen=True)
class CatalogueEntry:
    name: str  # canonical lokal name, "tinyllama:latest"
    repo_id: str  # "TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF"
    quant: str  # "Q4_K_M"
    file: str  # the file we expect that quant to be, for messages
    description: str = ""

    @property
    def hf_ref(self) -> str:
        return f"hf.co/{self.repo_id}:{self.quant}"


def _entries(*rows: tuple[tuple[str, ...], str, str, str, str]) -> dict[str, CatalogueEntry]:
    table: dict[str, CatalogueEntry] = {}
    for names, repo, quant, file, description in rows:
        for name in names:
            table[name] = CatalogueEntry(name, repo, quant, file, description)
    return table


CATALOGUE: dict[str, CatalogueEntry] = _entries(
    (("tinyllama:latest", "tinyllama:1.1b"), "TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF", "Q4_K_M",
     "tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf", "TinyLlama 1.1B Chat v1.0"),
    (("llama3.2:1b",), "bartowski/Llama-3.2-1B-Instruct-GGUF", "Q4_K_M",
     "Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Llama 3.2 1B Instruct"),
    (("llama3.2:latest", "llama3.2:3b"), "bartowski/Llama-3.2-3B-Instruct-GGUF", "Q4_K_M",
     "Llama-3.2-3B-Instruct-Q4_K_M.gguf", "Llama 3.2 3B Instruct"),
    (("llama3.1:latest", "llama3.1:8b"), "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF", "Q4_K_M",
     "Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", "Llama 3.1 8B Instruct"),
    (("phi3:latest", "phi3:mini", "phi3:3.8b"), "microsoft/Phi-3-mini-4k-instruct-gguf", "q4",
     "Phi-3-mini-4k-instruct-q4.gguf", "Phi-3 mini 4k Instruct"),
    (("phi3.5:latest", "phi3.5:3.8b"), "bartowski/Phi-3.5-mini-instruct-GGUF", "Q4_K_M",
     "Phi-3.5-mini-instruct-Q4_K_M.gguf", "Phi-3.5 mini Instruct"),
    (("qwen2.5:0.5b",), "Qwen/Qwen2.5-0.5B-Instruct-GGUF", "Q4_K_M",
     "qwen2.5-0.5b-instruct-q4_k_m.gguf", "Qwen2.5 0.5B Instruct"),
    (("qwen2.5:1.5b",), "Qwen/Qwen2.5-1.5B-Instruct-GGUF", "Q4_K_M",
     "qwen2.5-1.5b-instruct-q4_k_m.gguf", "Qwen2.5 1.5B Instruct"),
    (("qwen2.5:3b",), "Qwen/Qwen2.5-3B-Instruct-GGUF", "Q4_K_M",
     "qwen2.5-3b-instruct-q4_k_m.gguf", "Qwen2.5 3B Instruct"),
    (("gemma2:2b",), "bartowski/gemma-2-2b-it-GGUF", "Q4_K_M",
     "gemma-2-2b-it-Q4_K_M.gguf", "Gemma 2 2B Instruct"),
    (("gemma3:1b",), "unsloth/gemma-3-1b-it-GGUF", "Q4_K_M",
     "gemma-3-1b-it-Q4_K_M.gguf", "Gemma 3 1B Instruct"),
    (("smollm2:360m",), "HuggingFaceTB/SmolLM2-360M-Instruct-GGUF", "Q8_0",
     "smollm2-360m-instruct-q8_0.gguf", "SmolLM2 360M Instruct"),
    (("smollm2:1.7b",), "HuggingFaceTB/SmolLM2-1.7B-Instruct-GGUF", "Q4_K_M",
     "smollm2-1.7b-instruct-q4_k_m.gguf", "SmolLM2 1.7B Instruct"),
    (("mistral:latest", "mistral:7b"), "bartowski/Mistral-7B-Instruct-v0.3-GGUF", "Q4_K_M",
     "Mistral-7B-Instruct-v0.3-Q4_K_M.gguf", "Mistral 7B Instruct v0.3"),
)  # fmt: skip


def lookup(name: ModelName) -> CatalogueEntry | None:
    return CATALOGUE.get(str(name))


def same_model(name: ModelName) -> list[str]:
    """Catalogue names with the same model part (for "did you mean" hints)."""
    prefix = f"{name.base}:"
    return sorted(n for n in CATALOGUE if n.startswith(prefix))
