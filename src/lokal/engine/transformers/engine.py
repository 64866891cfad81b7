"""`TransformersEngine`: the `Engine` protocol on Hugging Face transformers and PyTorch (the `hf` extra).

It exists so the same weights can be run, served, benchmarked and audited under two runtimes with one set of
front ends. Generation goes through the padded batcher (batcher.py); embeddings and log-likelihood scoring run
on the caller's thread under a lock, with no KV cache, so they never disturb running generations.

Differences from the llama.cpp engine, on purpose or for now: `format` (JSON / schema-constrained output) is
refused with a clear message (transformers has no grammar sampler; llama.cpp has), and there is no prompt
cache between requests.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lokal.engine.base import Format, TokenLogprob
from lokal.engine.logprobs import check_top
from lokal.engine.messages import normalise_messages, seeded
from lokal.engine.options import Options
from lokal.engine.stops import StopMatcher
from lokal.engine.stream import TokenStream
from lokal.engine.tokens import check_token_ids
from lokal.engine.tools import ToolRequest, messages_for
from lokal.engine.transformers import loader
from lokal.engine.transformers.batcher import Batcher, Detokenizer, cache_argument, cache_is_mergeable, forward
from lokal.engine.transformers.batcher import Sequence as BatchSequence
from lokal.engine.transformers.sampling import Sampler, resolve_seed
from lokal.errors import ContextOverflow, EngineError, InvalidOptions, NoChatTemplate, Unsupported
from lokal.store.types import LocalModel

_NO_TOOLS = (
    "model '{model}' does not support tools on the transformers engine: tool calling needs the llama.cpp "
    "engine's grammar sampler (it keeps a call to the tool's schema); drop tools or use --engine llamacpp"
)


class TransformersEngine:
    """Implements `lokal.engine.base.Engine` on transformers."""

    runtime = "transformers"

    def __init__(
        self,
        model: LocalModel,
        *,
        context_length: int,
        num_parallel: int,
        threads: int,
        max_queue: int = 512,
        cache_dir: Path,
        verbose: bool = False,
    ) -> None:
        if threads > 0:
            torch.set_num_threads(threads)  # process-wide in PyTorch; lokal runs one engine kind per process
        self.model = model
        loaded = loader.load(model, cache_dir=cache_dir, verbose=verbose)
        self.kind = loaded.kind
        self.tokenizer = loaded.tokenizer
        self._hf = loaded.model
        self.device = loaded.device
        self.load_info = loaded.info
        self._aux_lock = threading.Lock()
        self._batcher: Batcher | None = None
        if self.kind == "sentence-transformers":
            self.context_length = int(self._hf.max_seq_length)
            self.num_parallel = 1
            self.vocab_size = len(self.tokenizer)
            return
        # Ids the model can embed: its input embedding's rows (a tokenizer may list fewer, never more).
        self.vocab_size = int(self._hf.get_input_embeddings().num_embeddings)
        trained = getattr(self._hf.config, "max_position_embeddings", None) or context_length
        # Like Ollama and the llama.cpp engine, never give a sequence more context than the model was trained for.
        self.context_length = min(context_length, trained)
        self.eos_ids = _eos_ids(self._hf, self.tokenizer)
        batchable = self._cache_is_mergeable()
        self.num_parallel = num_parallel if batchable else 1
        self.load_info["batching"] = "padded" if batchable else "one sequence at a time (sliding-window cache)"
        self._batcher = Batcher(
            self._hf,
            eos_ids=self.eos_ids,
            n_seq=self.num_parallel,
            n_ctx_seq=self.context_length,
            max_queue=max_queue,
            device=self.device,
            batchable=batchable,
            token_bytes=self._token_bytes,
            name=f"lokal-transformers[{model.name}]",
        )

    def _cache_is_mergeable(self) -> bool:
        """Run one token to see the model's cache layout (plain key/value layers can be batched)."""
        from transformers import DynamicCache

        with torch.inference_mode():
            probe = torch.tensor([[next(iter(self.eos_ids), 0)]], device=self.device)
            empty = DynamicCache(config=self._hf.config)
            _, cache = forward(self._hf, cache_argument(self._hf), empty, input_ids=probe)
        return cache_is_mergeable(cache)

    # -- generation ----------------------------------------------------------------------------
    def _generator(self) -> Batcher:
        if self.kind == "sentence-transformers":
            raise Unsupported(
                f"'{self.model.name}' is an embedding model: it does not generate or score text (use it with embed)"
            )
        if self._batcher is None:
            raise EngineError("the model was unloaded; retry the request")
        return self._batcher

    def generate(
        self,
        prompt: str | Sequence[int],
        options: Options,
        *,
        format: Format = None,
        add_special: bool = True,
        logprobs: int | None = None,
        tools: ToolRequest | None = None,
        reading: Any = None,
    ) -> TokenStream:
        if reading is not None:  # only a thinking model's prompt asks for it; this engine has none (`can_think`)
            raise Unsupported(f"model '{self.model.name}' does not support thinking on the transformers engine")
        batcher = self._generator()
        top_logprobs = check_top(logprobs)
        if tools is not None and tools.offered:
            raise Unsupported(_NO_TOOLS.format(model=self.model.name))
        if options.speculative not in (None, "off"):
            raise Unsupported(
                f"speculative decoding ({options.speculative!r}) is built into the llama.cpp engine only; "
                "drop the option or use --engine llamacpp"
            )
        if format:
            raise Unsupported(
                "format (JSON or a JSON schema) needs the llama.cpp engine's grammar sampler; "
                "the transformers engine does not constrain output: drop format or use --engine llamacpp"
            )
        tokens = self.tokenize(prompt, add_special=add_special)
        if not tokens:
            bos = self.tokenizer.bos_token_id
            if bos is None:
                raise InvalidOptions("the prompt is empty")
            tokens = [bos]
        if len(tokens) >= self.context_length:
            raise ContextOverflow(len(tokens), self.context_length)
        stream = TokenStream()
        seq = BatchSequence(
            prompt=tokens,
            sampler=Sampler(options, resolve_seed(options.seed)),
            max_tokens=options.num_predict if options.num_predict >= 0 else -1,
            stops=StopMatcher(options.stop),
            stream=stream,
            detokenizer=Detokenizer(self.tokenizer),
            top_logprobs=top_logprobs,
        )
        batcher.submit(seq)
        return stream

    def bind_tools(self, tools: ToolRequest) -> ToolRequest:
        return tools  # the generic format: this engine refuses tools it would have to constrain anyway

    #: Thinking (lokal.engine.thinking) needs a grammar that lets the reasoning through before a call or a
    #: format, which this engine lacks: it is refused here, never a silently unsplit answer.
    can_think = False

    def render_chat(
        self, messages: Sequence[dict[str, Any]], tools: ToolRequest | None = None, think: str | None = None
    ) -> str:
        if think is not None:
            raise Unsupported(f"model '{self.model.name}' does not support thinking on the transformers engine")
        template = self.model.template or getattr(self.tokenizer, "chat_template", None)
        if not template or self.kind == "sentence-transformers":
            raise NoChatTemplate(
                f"model '{self.model.name}' has no chat template in its tokenizer; "
                f"use generate (lokal run with a prompt, or /api/generate) instead of chat"
            )
        try:
            return self.tokenizer.apply_chat_template(
                messages_for(normalise_messages(seeded(self.model.messages, messages), self.model.system), tools),
                chat_template=template,
                tokenize=False,
                add_generation_prompt=True,
            )
        except ValueError as exc:  # the template's own raise_exception(), e.g. "roles must alternate"
            raise InvalidOptions(f"the model's chat template rejected these messages: {exc}") from None

    def chat(
        self,
        messages: Sequence[dict[str, Any]],
        options: Options,
        *,
        format: Format = None,
        logprobs: int | None = None,
        tools: ToolRequest | None = None,
        think: str | None = None,
    ) -> TokenStream:
        self._generator()
        if tools is not None and tools.offered:
            raise Unsupported(_NO_TOOLS.format(model=self.model.name))
        # The template writes any BOS itself, so the rendered text is tokenized without adding specials.
        tokens = self.tokenize(self.render_chat(messages, tools, think), add_special=False)
        return self.generate(tokens, options, format=format, logprobs=logprobs)

    def _token_bytes(self, token: int) -> bytes:
        """A token's text with special tokens written out, as UTF-8 (a byte-level token that holds part of a
        character decodes to U+FFFD here: the tokenizer gives no portable way to its raw bytes)."""
        return self.tokenizer.decode([token], skip_special_tokens=False, clean_up_tokenization_spaces=False).encode()

    # -- tokens ------------------------------------------------------------------------------------
    def tokenize(self, text: str | Sequence[int], *, add_special: bool = True) -> list[int]:
        """Token ids of `text`; ids given as a sequence are checked against the vocabulary and returned as they are."""
        if not isinstance(text, str):
            return check_token_ids(text, self.vocab_size)
        return list(self.tokenizer(text, add_special_tokens=add_special)["input_ids"])

    def detokenize(self, tokens: Sequence[int]) -> str:
        ids = check_token_ids(tokens, self.vocab_size)
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    # -- embeddings and scoring --------------------------------------------------------------------
    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """L2-normalised sentence embeddings: the model's own pooling for a sentence-transformers model,
        else the mean of the last hidden states (what the llama.cpp engine returns for a causal model)."""
        tokenized = [self.tokenize(text, add_special=True) for text in texts]  # once: checked, then embedded
        for text, ids in zip(texts, tokenized, strict=True):
            if not text or not ids:
                raise InvalidOptions("cannot embed an empty string")
            if len(ids) > self.context_length:  # sentence-transformers would silently truncate: refuse instead
                raise ContextOverflow(len(ids), self.context_length)
        with self._aux_lock, torch.inference_mode():
            if self.kind == "sentence-transformers":
                vectors = self._hf.encode(list(texts), normalize_embeddings=True, convert_to_tensor=True)
                return vectors.double().cpu().tolist()
            out: list[list[float]] = []
            for ids in tokenized:
                hidden = self._hf(input_ids=torch.tensor([ids], device=self.device), output_hidden_states=True)
                mean = hidden.hidden_states[-1][0].double().mean(dim=0)
                out.append(torch.nn.functional.normalize(mean, dim=0).cpu().tolist())
            return out

    def logprobs(self, text: str, *, add_special: bool = True) -> list[TokenLogprob]:
        """Natural-log probability of each token given every token before it (one forward pass, no cache)."""
        self._generator()
        tokens = self.tokenize(text, add_special=add_special)
        if len(tokens) > self.context_length:
            raise ContextOverflow(len(tokens), self.context_length)
        if not tokens:
            return []
        result = [TokenLogprob(tokens[0], self.detokenize(tokens[:1]), None)]
        if len(tokens) == 1:
            return result
        with self._aux_lock, torch.inference_mode():
            ids = torch.tensor([tokens], device=self.device)
            logits = self._hf(input_ids=ids).logits[0, :-1].double()
            chosen = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None])[:, 0].cpu().tolist()
        for token, value in zip(tokens[1:], chosen, strict=True):
            text_piece = self.tokenizer.decode([token], clean_up_tokenization_spaces=False)
            result.append(TokenLogprob(token, text_piece, float(value) if math.isfinite(value) else None))
        return result

    # -- lifecycle ---------------------------------------------------------------------------------
    def active_requests(self) -> int:
        running, waiting = self.counts()
        return running + waiting

    def counts(self) -> tuple[int, int]:
        return self._batcher.counts() if self._batcher is not None else (0, 0)

    def failure(self) -> str | None:
        return self._batcher.failure if self._batcher is not None else None

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
            self._batcher = None
        self._hf = None

    def __enter__(self) -> TransformersEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every token that ends generation: the generation config's list and the tokenizer's EOS."""
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(int(i) for i in configured)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids
