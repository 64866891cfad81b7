"""Name parsing: canonical forms, aliases, and every way a name could try to escape the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from lokal.errors import InvalidModelName
from lokal.store.layout import StoreLayout
from lokal.store.names import canonical, is_hf_ref, parse_hf_ref, parse_name, sanitise


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("llama3.2", "llama3.2:latest"),
        ("llama3.2:1b", "llama3.2:1b"),
        ("Llama3.2:1B", "llama3.2:1b"),
        ("  tinyllama  ", "tinyllama:latest"),
        ("library/llama3.2:3b", "llama3.2:3b"),
        ("registry.ollama.ai/library/llama3.2:3b", "llama3.2:3b"),
        ("myns/my-model_v2.1:q4_k_m", "myns/my-model_v2.1:q4_k_m"),
        (
            "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
            "hf.co/bartowski/llama-3.2-1b-instruct-gguf:q4_k_m",
        ),
        ("huggingface.co/Org/Repo", "hf.co/org/repo:latest"),
        ("gemma3:270m", "gemma3:270m"),
        ("gemma3", "gemma3:latest"),  # not an alias: the store suggests gemma3:270m instead
    ],
)
def test_canonical_names(raw: str, expected: str) -> None:
    assert canonical(raw) == expected


@pytest.mark.parametrize("raw", ["smollm2", "SmolLM2", "smollm2:latest", "SMOLLM2:LATEST", "smollm2:135m"])
def test_smollm2_aliases(raw: str) -> None:
    assert canonical(raw) == "smollm2:135m"


def test_alias_can_be_skipped() -> None:
    assert str(parse_name("smollm2", apply_aliases=False)) == "smollm2:latest"


def test_hf_ref_keeps_case_for_the_hub() -> None:
    ref = parse_hf_ref("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M")
    assert ref.repo_id == "bartowski/Llama-3.2-1B-Instruct-GGUF"
    assert ref.quant == "Q4_K_M"
    assert str(ref.name) == "hf.co/bartowski/llama-3.2-1b-instruct-gguf:q4_k_m"
    assert parse_hf_ref("hf.co/a/b").quant is None
    assert parse_hf_ref("hf.co/a/b:latest").quant is None
    assert is_hf_ref("HF.CO/a/b") and not is_hf_ref("tinyllama")


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("../etc/passwd", "'..'"),
        ("..", "'..'"),
        ("a/../b", "'..'"),
        ("model:..", "'..'"),
        ("./model", "'.'"),
        ("/etc/passwd", "path"),
        ("~/model", "path"),
        ("a\\b", "backslash"),
        ("..\\..\\windows", "backslash"),
        ("mo\x00del", "NUL"),
        ("a/b/c/d", "too many"),
        ("a//b", "empty"),
        ("/a", "path"),
        ("a/", "empty"),
        ("model:", "empty"),
        ("model:a:b", "more than one"),
        ("mo del", "whitespace"),
        ("mo\tdel", "whitespace"),
        ("mödel", "contains"),
        ("model$", "contains"),
        ("model;rm -rf", "whitespace"),
        ("-model", "start with"),
        (".hidden", "start with"),
        ("model:.tag", "tag"),
        ("model:-tag", "tag"),
        ("a" * 81, "longer than 80"),
        ("a:" + "b" * 81, "longer than 80"),
        ("x" * 301, "longer than 300"),
        ("evil.com/ns/model", "too many"),
        ("evil.com/model", "unknown registry"),
        ("hf.co/onlyorg", "hf.co/ORG/REPO"),
        ("hf.co/org/repo/extra", "hf.co/ORG/REPO"),
        ("hf.co/../repo", "'..'"),
        ("hf.co/org/re po", "whitespace"),
        ("registry.ollama.ai/model", "NAMESPACE"),
    ],
)
def test_invalid_names_are_rejected(raw: str, fragment: str) -> None:
    with pytest.raises(InvalidModelName) as info:
        parse_name(raw)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_rejection_message_is_one_readable_line() -> None:
    with pytest.raises(InvalidModelName, match=r"^invalid model name '\.\./x': "):
        parse_name("../x")


def test_non_string_is_rejected() -> None:
    with pytest.raises(InvalidModelName):
        parse_name(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw", ["smollm2", "ns/model:tag", "hf.co/Org/Repo:Q8_0", "a" * 80 + ":" + "b" * 80, "x.y_z-1:v1.2"]
)
def test_every_valid_name_stays_inside_the_store(tmp_path: Path, raw: str) -> None:
    layout = StoreLayout(tmp_path)
    path = layout.manifest_path(parse_name(raw)).resolve()
    assert layout.manifests.resolve() in path.parents
    # and the path maps back to the same name
    assert [str(n) for n, _ in _written(layout, path)] == [canonical(raw)]


def _written(layout: StoreLayout, path: Path) -> list:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    return list(layout.iter_manifests())


def test_sanitise_file_stems() -> None:
    assert sanitise("SmolLM2-135M-Instruct.Q4_1") == "smollm2-135m-instruct.q4_1"
    assert sanitise("My Model (final)!") == "my-model-final"
    assert sanitise("...") == "model"
    assert sanitise("..evil") == "evil"
    assert len(sanitise("x" * 500)) == 80
    for stem in ["My Model", "../../etc", "a\\b", "ü"]:
        parse_name(sanitise(stem))  # always valid
