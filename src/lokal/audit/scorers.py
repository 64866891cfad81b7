"""The model under audit as the suites see it (`lokal.audit.suite.Scorer`): in this process, or behind a server.

    scorer = open_scorer("smollm2")                                     # in-process, true log-likelihoods
    scorer = open_scorer("smollm2", url="http://127.0.0.1:11434/v1")    # lokal serve / vLLM: /v1/completions
    scorer = open_scorer("llama3", url="http://127.0.0.1:11434")        # Ollama: generation suites only

Likelihood suites need the log-probability of every token of a given text. In process that is the engine's
`logprobs` (the same numbers lm-evaluation-harness computes from full logits). Over HTTP the only standard way
is OpenAI's legacy `/v1/completions` with `echo` and `logprobs` (vLLM and `lokal serve` answer it; llama.cpp's
`llama-server`, OpenAI's chat API and Ollama do not: `../shared/ref/responsible-ai.md` §1.3, §5). A backend
that cannot give them makes `score` raise `LikelihoodUnsupported` with a message naming the server and the
suites that still run, never chance-level numbers that look like measurements (the llama.cpp#27174 failure).

Every scorer is blocking (suites are sequential) and has `close()`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import httpx

from lokal import http_client
from lokal.audit.suite import AuditError, LikelihoodUnsupported, Scorer, ScorerBase, TokenScore
from lokal.audit.suites import GENERATION_SUITES, LIKELIHOOD_SUITES
from lokal.config import Settings
from lokal.store.types import LocalModel

__all__ = [
    "GENERATION_SUITES",
    "LIKELIHOOD_SUITES",
    "SCORERS",
    "InProcessScorer",
    "OllamaScorer",
    "OpenAIScorer",
    "open_scorer",
    "require_likelihood",
]

#: keep_alive for the in-process model: loaded for the whole audit (Ollama's "-1" = forever).
FOREVER = -1
#: What the OpenAI scorer sends once to learn whether a server gives prompt log-probabilities.
PROBE_TEXT = "Hello, world."


def _which_suites() -> str:
    return (
        f"the likelihood suites ({', '.join(LIKELIHOOD_SUITES)}) need them and will not run against it; "
        f"the generation suite ({', '.join(GENERATION_SUITES)}) still runs"
    )


def require_likelihood(scorer: Scorer, suite: str) -> None:
    """Refuse `suite` at once, before any model call, when `scorer` cannot give prompt log-probabilities, with
    the scorer's own reason when it has one (which server, what it answered)."""
    if not scorer.supports_likelihood:
        reason = scorer.refusal
        raise LikelihoodUnsupported(
            f"{suite}: {reason}"
            if reason
            else f"{suite} needs prompt log-probabilities and {scorer.where} cannot give them; {_which_suites()}"
        )


# -- in-process ---------------------------------------------------------------------------------------------
class InProcessScorer(ScorerBase):
    """The model through lokal's engine manager in this process: `score` is the engine's true log-likelihood
    (with the model's BOS when its tokenizer adds one, exactly as `Engine.logprobs` tokenizes), `generate` goes
    through `lokal.inference` like every other caller. The model stays loaded until `close()`.

    `InProcessScorer(manager, "smollm2")` shares a manager (not closed here);
    `InProcessScorer.from_settings("smollm2", settings)` makes and owns one."""

    where = "in-process"
    supports_likelihood = True

    def __init__(self, manager: Any, model: str, *, owns_manager: bool = False) -> None:
        from lokal import inference

        self._inference = inference
        self.manager = manager
        self.model = model
        self._owns_manager = owns_manager
        self._alive = inference.keep_alive_seconds(FOREVER)
        # Acquired once and held until close(): a wrong name fails before any suite starts, the model cannot be
        # unloaded mid-audit, and scoring thousands of sentences does not resolve the name thousands of times.
        # Same num_ctx as generation asks for, so the two share one loaded engine.
        self.resolved: LocalModel = inference.resolve(manager, model)
        num_ctx = inference.context_length(self.resolved, None)
        self._engine, _ = manager.acquire(self.resolved, num_ctx=num_ctx, keep_alive=self._alive)

    @classmethod
    def from_settings(cls, model: str, settings: Settings | None = None) -> InProcessScorer:
        from lokal.engine.manager import open_runtime

        manager = open_runtime(settings or Settings.from_env()).manager
        try:
            return cls(manager, model, owns_manager=True)
        except BaseException:
            manager.close()
            raise

    def score(self, text: str) -> list[TokenScore]:
        if self._engine is None:
            raise AuditError("this scorer is closed")
        return [TokenScore(t.token, t.text, t.logprob) for t in self._engine.logprobs(text)]

    def generate(self, prompt: str, *, max_tokens: int, seed: int, chat: bool = False) -> str:
        """Greedy (temperature 0) continuation; `chat` sends the prompt as a user turn through the chat
        template, otherwise it is a raw completion of the text."""
        options = {"temperature": 0.0, "seed": seed, "num_predict": max_tokens}
        run = self._inference.start_generate(
            self.manager, self.resolved, prompt, raw=not chat, options=options, keep_alive=FOREVER
        )
        try:
            return run.stream.text()
        finally:
            run.release()

    def close(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            self.manager.release(engine, keep_alive=self._alive)
        if self._owns_manager:
            self.manager.close()


# -- over HTTP ----------------------------------------------------------------------------------------------
class _HttpScorer(ScorerBase):
    """What both HTTP scorers share: one blocking client from `lokal.http_client` (the key from `api_key_env` as
    a bearer token, no proxy for loopback URLs) and one-line errors that name the server."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout_s: float = http_client.DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        try:
            root = http_client.normalize_url(url)
        except http_client.InvalidURL as exc:  # a bad URL is bad audit input
            raise AuditError(str(exc)) from None
        self.root = root.removesuffix("/v1")
        self.model = model
        key = http_client.api_key_from(api_key_env)
        self._client = http_client.make_client(self.root, timeout_s=timeout_s, api_key=key, transport=transport)

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        try:
            return self._client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise AuditError(f"{self.root}{path}: {http_client.unreachable_text(self.root, exc)}") from None

    def _json(self, response: httpx.Response, path: str) -> dict[str, Any]:
        body = http_client.json_or_none(response)
        if not isinstance(body, dict):
            raise AuditError(http_client.not_json_text(f"{self.root}{path}", response))
        return body

    def _failed(self, response: httpx.Response, path: str) -> AuditError:
        return AuditError(f"{self.root}{path} failed for model '{self.model}': {http_client.error_text(response)}")

    def close(self) -> None:
        self._client.close()


class OpenAIScorer(_HttpScorer):
    """A server speaking OpenAI's API (`lokal serve`, vLLM, a cloud API).

    `score` asks `/v1/completions` for `{"prompt": text, "max_tokens": 0, "echo": true, "logprobs": 1,
    "temperature": 0}` and reads `choices[0].logprobs.token_logprobs` (the first token's is null: it has no
    context). A server that rejects `max_tokens: 0` is asked again with 1, and the generated token is dropped.
    A server that answers without prompt log-probabilities, or does not echo the prompt, or says it does not
    support echo/logprobs, gets `LikelihoodUnsupported`. Whether it can is probed once, lazily, the first
    time `supports_likelihood` is read. Servers give token texts, not ids (`TokenScore.token` is None).

    `generate` uses `/v1/chat/completions` for `chat`, else `/v1/completions`, at temperature 0 with `seed`.
    """

    def __init__(
        self,
        url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        *,
        timeout_s: float = http_client.DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, model, api_key_env=api_key_env, timeout_s=timeout_s, transport=transport)
        self.where = f"{self.root}/v1"
        self.refusal: str | None = None
        self._probed: bool | None = None
        self._max_tokens = 0

    @property
    def supports_likelihood(self) -> bool:
        if self._probed is None and self.refusal is None:
            with contextlib.suppress(LikelihoodUnsupported):  # the refusal is kept in self.refusal
                self.score(PROBE_TEXT)
            self._probed = self.refusal is None
        return self.refusal is None

    def _refuse(self, why: str) -> LikelihoodUnsupported:
        self.refusal = (
            f"the OpenAI-compatible server at {self.where} gives no prompt log-probabilities for '{self.model}' "
            f"({why}); {_which_suites()}. Audit likelihood suites in-process (lokal audit MODEL) or against "
            "`lokal serve`'s OpenAI API, or a vLLM server"
        )
        return LikelihoodUnsupported(self.refusal)

    def score(self, text: str) -> list[TokenScore]:
        if self.refusal is not None:
            raise LikelihoodUnsupported(self.refusal)
        path = "/v1/completions"
        while True:
            body = {
                "model": self.model,
                "prompt": text,
                "max_tokens": self._max_tokens,
                "echo": True,
                "logprobs": 1,
                "temperature": 0,
            }
            response = self._post(path, body)
            if response.status_code < 400:
                break
            message = http_client.error_text(response)
            lowered = message.lower()
            if self._max_tokens == 0 and "max_tokens" in lowered:
                self._max_tokens = 1  # e.g. "max_tokens must be at least 1": ask for one token and drop it
                continue
            if "echo" in lowered or "logprob" in lowered:
                raise self._refuse(f"/v1/completions answered {message}")
            if response.status_code in (404, 405, 501) and self.model not in message:
                raise self._refuse(f"no /v1/completions route: {message}")
            raise self._failed(response, path)
        return self._parse(self._json(response, path), text)

    def _parse(self, body: dict[str, Any], text: str) -> list[TokenScore]:
        choices = body.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        logprobs = choice.get("logprobs")
        values = logprobs.get("token_logprobs") if isinstance(logprobs, dict) else None
        tokens = logprobs.get("tokens") if isinstance(logprobs, dict) else None
        if not isinstance(values, list) or not values or not isinstance(tokens, list) or len(tokens) != len(values):
            raise self._refuse("its answer has no logprobs.token_logprobs")
        echoed = choice.get("text")
        if not isinstance(echoed, str) or not echoed.startswith(text):
            raise self._refuse("it did not echo the prompt, so its log-probabilities are for generated tokens only")
        generated = self._generated_count(body, echoed, text)
        keep = len(values) - generated
        if keep < 1:
            raise self._refuse("its log-probabilities cover the generated tokens only")
        out = []
        for token, value in zip(tokens[:keep], values[:keep], strict=True):
            if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
                raise AuditError(f"{self.where}/completions sent a log-probability that is not a number: {value!r}")
            out.append(TokenScore(None, str(token), None if value is None else float(value)))
        return out

    def _generated_count(self, body: dict[str, Any], echoed: str, text: str) -> int:
        """How many trailing entries are generated tokens: none when `max_tokens` was 0; else the server's
        `usage.completion_tokens`, or one when it sent no usage and generated any text."""
        if self._max_tokens == 0:
            return 0
        usage = body.get("usage")
        count = usage.get("completion_tokens") if isinstance(usage, dict) else None
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
            return count
        return 1 if echoed != text else 0

    def generate(self, prompt: str, *, max_tokens: int, seed: int, chat: bool = False) -> str:
        common = {"model": self.model, "max_tokens": max_tokens, "temperature": 0, "seed": seed}
        path = "/v1/chat/completions" if chat else "/v1/completions"
        body = {**common, "messages": [{"role": "user", "content": prompt}]} if chat else {**common, "prompt": prompt}
        response = self._post(path, body)
        if response.status_code >= 400:
            raise self._failed(response, path)
        choices = self._json(response, path).get("choices")
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        text = (choice.get("message") or {}).get("content") if chat else choice.get("text")
        if not isinstance(text, str):
            raise AuditError(f"{self.root}{path} answered without {'message content' if chat else 'text'}")
        return text


class OllamaScorer(_HttpScorer):
    """A server speaking Ollama's API. It gives log-probabilities of generated tokens at most, never of a
    prompt, so only generation suites run: `supports_likelihood` is False and `score` refuses."""

    supports_likelihood = False

    def __init__(
        self,
        url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        *,
        timeout_s: float = http_client.DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, model, api_key_env=api_key_env, timeout_s=timeout_s, transport=transport)
        self.where = self.root
        self.refusal = (
            f"Ollama's API (at {self.root}) gives no prompt log-probabilities; run the likelihood suites in-process "
            f"(lokal audit MODEL) or against `lokal serve`'s OpenAI API (--url http://HOST:PORT/v1): {_which_suites()}"
        )

    def score(self, text: str) -> list[TokenScore]:
        raise LikelihoodUnsupported(self.refusal)

    def generate(self, prompt: str, *, max_tokens: int, seed: int, chat: bool = False) -> str:
        """`/api/generate`, not streamed: raw unless `chat` (then the model's template wraps it as a user turn)."""
        path = "/api/generate"
        body = {
            "model": self.model,
            "prompt": prompt,
            "raw": not chat,
            "stream": False,
            "options": {"temperature": 0, "seed": seed, "num_predict": max_tokens},
        }
        response = self._post(path, body)
        if response.status_code >= 400:
            raise self._failed(response, path)
        text = self._json(response, path).get("response")
        if not isinstance(text, str):
            raise AuditError(f"{self.root}{path} answered without a 'response'")
        return text


# -- choosing -----------------------------------------------------------------------------------------------
def _is_lokal(url: str, api_key_env: str | None, transport: httpx.BaseTransport | None) -> bool:
    """Whether the Ollama-API server at `url` is `lokal serve` (its `/health` names its pid in a header), whose
    OpenAI API also gives prompt log-probabilities. Ollama itself is not asked: its `/v1` has no echo."""
    probe = _HttpScorer(url, "-", api_key_env=api_key_env, transport=transport, timeout_s=10)
    try:
        response = probe._client.get("/health")
    except httpx.HTTPError:
        return False
    finally:
        probe.close()
    return http_client.PID_HEADER in response.headers


#: `--api` value -> the scorer for a server speaking that API, made as `cls(url, model, api_key_env,
#: transport=...)`.
SCORERS: dict[str, Callable[..., Scorer]] = {"ollama": OllamaScorer, "openai": OpenAIScorer}


def open_scorer(
    model: str,
    *,
    url: str | None = None,
    api: str | None = None,
    settings: Settings | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    transport: httpx.BaseTransport | None = None,
) -> Scorer:
    """The scorer for `model`: in-process when `url` is None, else for the server's API (`api`, or detected
    like `lokal bench` does). Detection calls a server that speaks both APIs Ollama; when that server is
    `lokal serve`, it is audited through its OpenAI API instead, which gives prompt log-probabilities (checked
    with one request). Blocking; call it outside a running event loop."""
    if url is None:
        return InProcessScorer.from_settings(model, settings)
    if api is not None and api not in SCORERS:
        raise AuditError(f"unknown API {api!r}: expected {' or '.join(repr(k) for k in SCORERS)}")
    kind = api
    if kind is None:
        from lokal.bench.targets import detect_api

        kind = _run(detect_api(url, api_key_env=api_key_env))
        if kind == "ollama" and _is_lokal(url, api_key_env, transport):
            candidate = OpenAIScorer(url, model, api_key_env, transport=transport)
            if candidate.supports_likelihood:
                return candidate
            candidate.close()
    return SCORERS[kind](url, model, api_key_env, transport=transport)


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except RuntimeError as exc:  # pragma: no cover - only when called inside a running loop
        coro.close()
        raise AuditError(f"open_scorer must be called outside a running event loop ({exc})") from None
