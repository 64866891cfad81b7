"""Model names: parse, validate and canonicalise what users type (pure functions, no I/O).

A name becomes a path under the store (`manifests/<namespace-or-host>/<name>/<tag>`), so this module is
the gate that keeps names from escaping it: every part is matched against a strict character set before
anything touches the disk, and anything else raises `InvalidModelName` with a message that says what is
wrong. Names are case-insensitive; the canonical form is lower case, as in Ollama.

Accepted shapes:

* ``name[:tag]``                     -> ``name:tag`` (tag defaults to ``latest``)
* ``namespace/name[:tag]``           -> ``namespace/name:tag`` (``library/`` is Ollama's default, dropped)
* ``hf.co/ORG/REPO[:QUANT]``         -> ``hf.co/org/repo:quant`` (``huggingface.co`` is accepted too)
* ``registry.ollama.ai/ns/name:tag`` -> the same as ``ns/name:tag``
"""

from __future__ import annotations

import dataclasses
import re

from lokal.errors import InvalidModelName

DEFAULT_TAG = "latest"
DEFAULT_NAMESPACE = "library"
HF_HOST = "hf.co"
OLLAMA_HOST = "registry.ollama.ai"
_HF_HOSTS = frozenset({"hf.co", "huggingface.co", "www.huggingface.co"})

MAX_NAME_LENGTH = 300
MAX_PART_LENGTH = 80
MAX_HF_PART_LENGTH = 96  # the hub's own limit for an org or repo name

# A part starts with a letter or digit, so ".", ".." and hidden names can never be produced.
_PART = re.compile(r"[a-z0-9][a-z0-9._-]*")
_TAG = re.compile(r"[a-z0-9_][a-z0-9._-]*")

#: Short names that stand for a fuller one. Applied after parsing, so `SmolLM2:Latest` works too.
ALIASES: dict[str, str] = {
    "smollm2:latest": "smollm2:135m",
    "all-minilm:latest": "all-minilm:22m",  # Ollama's name and tag for sentence-transformers/all-MiniLM-L6-v2
}


@dataclasses.dataclass(frozen=True)
class ModelName:
    """A validated, lower-case model name. `str(name)` is the canonical form."""

    model: str
    tag: str = DEFAULT_TAG
    namespace: str | None = None  # None = Ollama's "library"
    host: str | None = None  # only "hf.co" is kept; Ollama's registry host is dropped

    @property
    def is_huggingface(self) -> bool:
        return self.host == HF_HOST

    @property
    def repo_id(self) -> str:
        """`org/repo` for a Hugging Face name (lower case; see `HfRef` for the case the user typed)."""
        if not self.is_huggingface:
            raise ValueError(f"{self} is not a Hugging Face name")
        return f"{self.namespace}/{self.model}"

    @property
    def base(self) -> str:
        """The name without its tag, e.g. `hf.co/org/repo` or `smollm2`."""
        parts = [p for p in (self.host, self.namespace, self.model) if p]
        return "/".join(parts)

    def with_tag(self, tag: str) -> ModelName:
        return dataclasses.replace(self, tag=_check_tag(tag.lower(), tag))

    def __str__(self) -> str:
        return f"{self.base}:{self.tag}"


@dataclasses.dataclass(frozen=True)
class HfRef:
    """A Hugging Face reference as typed: repo id case is kept because the hub cache is case-sensitive."""

    repo_id: str  # "bartowski/Llama-3.2-1B-Instruct-GGUF"
    quant: str | None  # "Q4_K_M" or None (choose a default)

    @property
    def name(self) -> ModelName:
        org, repo = self.repo_id.lower().split("/")
        return ModelName(model=repo, tag=(self.quant or DEFAULT_TAG).lower(), namespace=org, host=HF_HOST)

    def __str__(self) -> str:
        return f"{HF_HOST}/{self.repo_id}" + (f":{self.quant}" if self.quant else "")


def _fail(raw: str, why: str) -> InvalidModelName:
    shown = raw if len(raw) <= 60 else raw[:57] + "..."
    return InvalidModelName(f"invalid model name {shown!r}: {why}")


def _precheck(raw: str) -> str:
    """Reject what can never be a name, with the most specific message we can give."""
    if not isinstance(raw, str):
        raise InvalidModelName(f"model name must be a string, got {type(raw).__name__}")
    text = raw.strip()
    if not text:
        raise InvalidModelName("model name must not be empty")
    if "\x00" in text:
        raise _fail(raw.replace("\x00", "\\0"), "it contains a NUL byte")
    if "\\" in text:
        raise _fail(raw, "backslashes are not allowed (use name:tag or ns/name:tag)")
    if len(text) > MAX_NAME_LENGTH:
        raise _fail(raw, f"it is longer than {MAX_NAME_LENGTH} characters")
    if text.startswith(("/", "~")):
        raise _fail(raw, "it looks like a path; to import a GGUF file use: lokal pull ./file.gguf --name NAME")
    if any(part in (".", "..") for part in re.split(r"[/:]", text)):
        raise _fail(raw, "'.' and '..' are not allowed in a name")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise _fail(raw, "it contains whitespace or a control character")
    if any(not part for part in text.split(":", 1)[0].split("/")):
        raise _fail(raw, "it has an empty part ('//', or a '/' at the start or end)")
    return text


def _check_part(part: str, raw: str, what: str, limit: int = MAX_PART_LENGTH) -> str:
    if not part:
        raise _fail(raw, f"the {what} is empty")
    if len(part) > limit:
        raise _fail(raw, f"the {what} is longer than {limit} characters")
    if not _PART.fullmatch(part):
        bad = next((c for c in part if not re.fullmatch(r"[a-z0-9._-]", c)), None)
        if bad is not None:
            raise _fail(raw, f"the {what} contains {bad!r}; use letters, digits, '.', '_' and '-'")
        raise _fail(raw, f"the {what} must start with a letter or a digit")
    return part


def _check_tag(tag: str, raw: str) -> str:
    if not tag:
        raise _fail(raw, "the tag after ':' is empty")
    if len(tag) > MAX_PART_LENGTH:
        raise _fail(raw, f"the tag is longer than {MAX_PART_LENGTH} characters")
    if not _TAG.fullmatch(tag):
        raise _fail(raw, "a tag may use letters, digits, '.', '_' and '-' and must not start with '.' or '-'")
    return tag


def _split_tag(text: str, raw: str) -> tuple[str, str | None]:
    if text.count(":") > 1:
        raise _fail(raw, "more than one ':'")
    if ":" in text:
        base, tag = text.split(":", 1)
        return base, tag
    return text, None


def parse_hf_ref(raw: str) -> HfRef:
    """Parse `hf.co/ORG/REPO[:QUANT]`, keeping the case of ORG/REPO for the hub."""
    text = _precheck(raw)
    base, tag = _split_tag(text, raw)
    parts = base.split("/")
    if len(parts) != 3 or parts[0].lower() not in _HF_HOSTS:
        raise _fail(raw, "expected hf.co/ORG/REPO[:QUANT]")
    _, org, repo = parts
    _check_part(org.lower(), raw, "organisation", MAX_HF_PART_LENGTH)
    _check_part(repo.lower(), raw, "repository", MAX_HF_PART_LENGTH)
    if tag is not None:
        _check_tag(tag.lower(), raw)
    quant = None if tag is None or tag.lower() == DEFAULT_TAG else tag
    return HfRef(repo_id=f"{org}/{repo}", quant=quant)


def is_hf_ref(raw: str) -> bool:
    """True if `raw` names a Hugging Face repository (by host prefix), valid or not."""
    return isinstance(raw, str) and raw.strip().lower().split("/", 1)[0] in _HF_HOSTS


def parse_name(raw: str, *, apply_aliases: bool = True) -> ModelName:
    """Parse and validate a model name into its canonical `ModelName`.

    >>> str(parse_name("SmolLM2"))
    'smollm2:135m'
    >>> str(parse_name("library/llama3.2:1B"))
    'llama3.2:1b'
    >>> str(parse_name("hf.co/Org/Repo:Q4_K_M"))
    'hf.co/org/repo:q4_k_m'
    """
    text = _precheck(raw)
    if is_hf_ref(text):
        name = parse_hf_ref(text).name
    else:
        lowered = text.lower()
        base, tag = _split_tag(lowered, raw)
        parts = base.split("/")
        if parts[0] == OLLAMA_HOST:
            if len(parts) != 3:
                raise _fail(raw, f"expected {OLLAMA_HOST}/NAMESPACE/NAME[:TAG]")
            parts = parts[1:]
        if len(parts) == 1:
            namespace, model = None, parts[0]
        elif len(parts) == 2:
            namespace, model = parts
            if "." in namespace:
                # A dot means a registry host (Ollama's rule); only hf.co and Ollama's own are understood.
                raise _fail(raw, f"unknown registry '{namespace}'; lokal pulls from hf.co/ORG/REPO[:QUANT]")
            _check_part(namespace, raw, "namespace")
            namespace = None if namespace == DEFAULT_NAMESPACE else namespace
        else:
            raise _fail(raw, "too many '/' (expected name, namespace/name or hf.co/ORG/REPO)")
        _check_part(model, raw, "model name")
        checked_tag = _check_tag(tag, raw) if tag is not None else DEFAULT_TAG
        name = ModelName(model=model, tag=checked_tag, namespace=namespace)
    if apply_aliases:
        target = ALIASES.get(str(name))
        if target is not None:
            return parse_name(target, apply_aliases=False)
    return name


def canonical(raw: str) -> str:
    """The canonical string for a name: `canonical("SmolLM2") == "smollm2:135m"`."""
    return str(parse_name(raw))


def sanitise(text: str, fallback: str = "model") -> str:
    """Turn free text (a file stem) into a valid model part: lower case, odd characters become '-'."""
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", text.lower())
    cleaned = re.sub(r"-{2,}", "-", cleaned).lstrip("._-").rstrip(".-")
    cleaned = cleaned[:MAX_PART_LENGTH].rstrip(".-")
    return cleaned or fallback
