"""`LlamaCppEngine`: one loaded GGUF model served by a continuous-batching worker.

Generation shares one context of `num_parallel` sequences. Embeddings and log-likelihood scoring run on
small contexts of their own, created on first use, so they never disturb the KV cache of running
generations; each is guarded by a lock and runs on the caller's thread.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Sequence
from typing import Any

import llama_cpp as L
import numpy as np

from lokal.engine import speculative, thinking
from lokal.engine.base import Format, TokenLogprob
from lokal.engine.llamacpp import runtime
from lokal.engine.llamacpp.batcher import Batcher
from lokal.engine.llamacpp.batcher import Sequence as BatchSequence
from lokal.engine.llamacpp.chat_template import ChatTemplate, normalise_messages
from lokal.engine.llamacpp.draft import DraftModel
from lokal.engine.llamacpp.sampling import (
    Sampler,
    TokenPrefixTree,
    after_thinking,
    call_grammar,
    grammar_for,
    resolve_seed,
)
from lokal.engine.logprobs import check_top
from lokal.engine.messages import seeded
from lokal.engine.options import Options
from lokal.engine.stops import StopMatcher
from lokal.engine.stream import TokenStream
from lokal.engine.thinking import Reading
from lokal.engine.tokens import check_token_ids
from lokal.engine.tool_formats import ToolFormat, detect, format_of
from lokal.engine.tools import ToolRequest
from lokal.errors import ContextOverflow, EngineError, InvalidOptions
from lokal.store.template_facts import can_think
from lokal.store.types import LocalModel

DEFAULT_BATCH = 512


class LlamaCppEngine:
    """Implements `lokal.engine.base.Engine` on llama.cpp."""

    runtime = "llamacpp"

    def __init__(
        self,
        model: LocalModel,
        *,
        context_length: int,
        num_parallel: int,
        threads: int,
        max_queue: int = 512,
        n_batch: int = DEFAULT_BATCH,
        verbose: bool = False,
        speculative_mode: str = "off",
        draft_model: LocalModel | None = None,
        draft_cost: speculative.DraftCost | None = None,
    ) -> None:
        """`speculative_mode`: requests draft tokens this way unless they say otherwise (speculative.MODES).
        `draft_model`: the model that drafts for requests in mode "draft" (loaded beside this one; it must share
        its vocabulary); `draft_cost` pins what a draft step is taken to cost (tests), else it is timed."""
        runtime.init_backend(verbose)
        if speculative_mode not in speculative.MODES:
            raise InvalidOptions(
                f"speculative mode must be one of {', '.join(speculative.MODES)}, got {speculative_mode!r}"
            )
        if speculative_mode == "draft" and draft_model is None:
            raise InvalidOptions("speculative mode 'draft' needs a draft model (LOKAL_SPECULATIVE=draft:MODEL)")
        if draft_model is not None and draft_model.details.format not in ("", "gguf"):
            raise InvalidOptions(
                f"draft model '{draft_model.name}' is a {draft_model.details.format} checkpoint; the llama.cpp "
                "engine drafts with a GGUF model"
            )
        self.speculative = speculative_mode
        self.model = model
        self.num_parallel = num_parallel
        self.threads = threads
        #: Nothing to say beyond the runtime: llama.cpp maps the GGUF file as it is (no conversion, no dtype).
        self.load_info: dict[str, Any] = {}
        self._model = runtime.load_model(model.path)
        self._closed = False
        try:
            self.vocab = runtime.Vocab(self._model)
            self.vocab_size = self.vocab.n_tokens
            self.n_ctx_train = L.llama_model_n_ctx_train(self._model)
            # Like Ollama, never give a sequence more context than the model was trained for.
            per_seq = min(context_length, self.n_ctx_train) if self.n_ctx_train > 0 else context_length
            # llama.cpp clamps a context's batch to its size and aborts the process (GGML_ASSERT) on a bigger
            # batch: with num_ctx 16 and 4 sequences, a 512-token prefill chunk killed the server. Clamp first.
            self.n_batch = n_batch = min(n_batch, per_seq * num_parallel)
            self._ctx = runtime.generation_context(
                self._model, n_ctx=per_seq * num_parallel, n_batch=n_batch, n_seq_max=num_parallel, threads=threads
            )
            self.context_length = L.llama_n_ctx_seq(self._ctx)
            template = model.template or runtime.model_metadata(self._model, "tokenizer.chat_template")
            self.template = ChatTemplate(
                template,
                bos_token=self.vocab.token_text(self.vocab.bos) if self.vocab.bos >= 0 else "",
                eos_token=self.vocab.token_text(self.vocab.eos) if self.vocab.eos >= 0 else "",
                model_name=model.name,
            )
            #: How this model writes tool calls: its template's own format, or the generic one.
            self.tool_format: ToolFormat = detect(template)
            #: Whether its template has a reasoning section (lokal.engine.thinking).
            self.can_think = can_think(template)
            self._draft = (
                DraftModel(
                    draft_model.path,
                    self.vocab,
                    name=draft_model.name,
                    target_name=model.name,
                    n_ctx_seq=self.context_length,
                    n_seq=num_parallel,
                    n_batch=n_batch,
                    threads=threads,
                )
                if draft_model is not None
                else None
            )
            if self._draft is not None:
                self.load_info["draft_model"] = draft_model.name  # type: ignore[union-attr]
                if draft_cost is None:  # until both are timed: decoding a few tokens reads every weight once
                    draft_cost = speculative.DraftCost(self._draft.size_bytes / max(L.llama_model_size(self._model), 1))
            self._batcher = Batcher(
                self._ctx,
                self.vocab,
                n_batch=n_batch,
                n_seq=num_parallel,
                n_ctx_seq=self.context_length,
                max_queue=max_queue,
                name=f"lokal-engine[{model.name}]",
                draft=self._draft,
                draft_cost=draft_cost,
            )
        except BaseException:
            draft = getattr(self, "_draft", None)
            if draft is not None:
                draft.close()
            L.llama_model_free(self._model)
            raise
        self._aux_lock = threading.Lock()
        self._embed_ctx: Any = None
        self._score_ctx: Any = None
        self._score_batch = min(self.n_batch, self.context_length)  # the scoring context holds one sequence
        #: Narrow a full grammar pass with the vocabulary's prefix tree (see sampling.TokenPrefixTree); False
        #: checks every token, for benchmarks and tests that compare the two.
        self.narrow_grammar = True
        self._prefix_tree: TokenPrefixTree | None = None

    # -- generation ----------------------------------------------------------------------------
    def generate(
        self,
        prompt: str | Sequence[int],
        options: Options,
        *,
        format: Format = None,
        add_special: bool = True,
        logprobs: int | None = None,
        tools: ToolRequest | None = None,
        reading: Reading | None = None,
    ) -> TokenStream:
        """`tools`: the request may call these (the prompt must already describe them, as `chat` renders it);
        sampling then keeps a call to the tools' schemas (see lokal.engine.tools). `reading`: the answer is a
        thinking model's, read as it says; a grammar (a call, a `format`) then starts after the reasoning."""
        top_logprobs = check_top(logprobs)
        tokens = self.tokenize(prompt, add_special=add_special)
        if not tokens:
            if self.vocab.bos < 0:
                raise InvalidOptions("the prompt is empty")
            tokens = [self.vocab.bos]
        if len(tokens) >= self.context_length:
            raise ContextOverflow(len(tokens), self.context_length)
        patterns: tuple[str, ...] = ()
        if tools is not None and tools.offered:
            if format:
                raise InvalidOptions("format and tools cannot be combined: a tool call is already constrained JSON")
            shape = format_of(tools).shape(tools)
            grammar: str | None = call_grammar(shape)
            if tools.lazy:
                patterns = (reading.after_thinking(shape.trigger) if reading is not None else shape.trigger,)
        else:
            grammar = grammar_for(format)
        if grammar is not None and reading is not None and not patterns:
            grammar = after_thinking(grammar, reading)
        sampler = Sampler(
            self.vocab.ptr,
            self.vocab.n_tokens,
            options,
            grammar,
            resolve_seed(options.seed),
            lazy_patterns=patterns,
            lazy_vocab=self.vocab,
            end_token=self.vocab.eos,
            prefix_tree=self._token_prefix_tree() if grammar is not None and self.narrow_grammar else None,
        )
        stream = TokenStream()
        stream.thinking = reading
        mode = options.speculative or self.speculative
        limit = speculative.DEFAULT_DRAFT if options.draft_num_predict is None else options.draft_num_predict
        if mode == "draft" and self._draft is None:
            raise InvalidOptions(
                f"option 'speculative' is 'draft', but model '{self.model.name}' was loaded without a draft model: "
                "start the server with LOKAL_SPECULATIVE=draft:MODEL, or ask for 'lookup'"
            )
        seq = BatchSequence(
            prompt=tokens,
            sampler=sampler,
            max_tokens=options.num_predict if options.num_predict >= 0 else -1,
            stops=StopMatcher(options.stop),
            stream=stream,
            top_logprobs=top_logprobs,
            drafter=speculative.PromptLookup(tokens) if mode == "lookup" and limit > 0 else None,
            draft_by_model=mode == "draft" and limit > 0,
            draft_limit=limit,
        )
        try:
            self._batcher.submit(seq)
        except BaseException:
            sampler.close()
            raise
        return stream

    def _token_prefix_tree(self) -> TokenPrefixTree:
        """Built on the first grammar request (0.17 s for the bundled model's 49,152 tokens, once per loaded
        model), then shared: it is read-only. Two threads racing here build it twice, which is harmless."""
        if self._prefix_tree is None:
            tokens = range(self.vocab.n_tokens)
            self._prefix_tree = TokenPrefixTree(
                [self.vocab.piece(t, special=True) for t in tokens],
                {t for t in tokens if L.llama_vocab_is_eog(self.vocab.ptr, t)},
            )
        return self._prefix_tree

    def bind_tools(self, tools: ToolRequest) -> ToolRequest:
        return dataclasses.replace(tools, format=self.tool_format)

    def render_chat(
        self, messages: Sequence[dict[str, Any]], tools: ToolRequest | None = None, think: str | None = None
    ) -> str:
        """The chat prompt; with tools, in the model's tool format (its template given the tools, or the
        generic format's system turn). A thinking model's template is told whether to think (`think`, a level)."""
        if tools is not None and tools.format is None:
            tools = self.bind_tools(tools)
        fmt = format_of(tools) if tools is not None else self.tool_format  # a history's calls, without tools
        chat = normalise_messages(seeded(self.model.messages, messages), self.model.system)
        rendered, extra = fmt.render(chat, tools)
        if self.can_think:
            extra.update(thinking.template_variables(think))
        elif think is not None:
            raise InvalidOptions(f"model '{self.model.name}' does not support thinking")
        return self.template.render(rendered, **extra)

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
        tools = self.bind_tools(tools) if tools is not None else None
        prompt = self.render_chat(messages, tools, think)
        reading = thinking.Reading.of_prompt(prompt) if think is not None else None
        # The template writes any BOS itself; let the tokenizer add one only if the text lacks it.
        tokens = self.tokenize(prompt, add_special=True)
        if len(tokens) >= 2 and tokens[0] == tokens[1] == self.vocab.bos:
            tokens = tokens[1:]
        return self.generate(tokens, options, format=format, logprobs=logprobs, tools=tools, reading=reading)

    # -- tokens ------------------------------------------------------------------------------------
    def tokenize(self, text: str | Sequence[int], *, add_special: bool = True) -> list[int]:
        """Token ids of `text`; ids given as a sequence are checked against the vocabulary and returned as they are."""
        if not isinstance(text, str):
            return check_token_ids(text, self.vocab_size)
        return self.vocab.tokenize(text, add_special=add_special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.vocab.detokenize(check_token_ids(tokens, self.vocab_size))

    # -- embeddings and scoring --------------------------------------------------------------------
    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Mean-pooled, L2-normalised embeddings (as Ollama returns them)."""
        out: list[list[float]] = []
        with self._aux_lock:
            if self._embed_ctx is None:
                n = min(self.context_length, 2048)
                self._embed_ctx = runtime.new_context(
                    self._model,
                    runtime.context_params(
                        n_ctx=n, n_batch=n, n_seq_max=1, threads=self.threads, flash_attn=False, embeddings=True
                    ),
                )
                self._embed_n = n
            ctx = self._embed_ctx
            n_embd = L.llama_model_n_embd(self._model)
            for text in texts:
                tokens = self.tokenize(text, add_special=True)
                if not tokens:
                    raise InvalidOptions("cannot embed an empty string")
                if len(tokens) > self._embed_n:
                    raise ContextOverflow(len(tokens), self._embed_n)
                L.llama_memory_clear(L.llama_get_memory(ctx), True)
                self._decode_all(ctx, tokens, logits=True)
                ptr = L.llama_get_embeddings_seq(ctx, 0)
                if not ptr:
                    raise EngineError(f"model '{self.model.name}' returned no embeddings")
                vector = np.ctypeslib.as_array(ptr, shape=(n_embd,)).astype(np.float64)
                norm = float(np.linalg.norm(vector))
                out.append((vector / norm if norm > 0 else vector).tolist())
        return out

    def logprobs(self, text: str, *, add_special: bool = True) -> list[TokenLogprob]:
        """Natural-log probability of each token given every token before it (true log-likelihood)."""
        tokens = self.tokenize(text, add_special=add_special)
        if len(tokens) > self.context_length:
            raise ContextOverflow(len(tokens), self.context_length)
        n_vocab = self.vocab.n_tokens
        result = [TokenLogprob(tokens[0], self.vocab.detokenize(tokens[:1]), None)] if tokens else []
        with self._aux_lock:
            if self._score_ctx is None:
                self._score_ctx = runtime.new_context(
                    self._model,
                    runtime.context_params(
                        n_ctx=self.context_length,
                        n_batch=self._score_batch,
                        n_seq_max=1,
                        threads=self.threads,
                        flash_attn=False,
                    ),
                )
            ctx = self._score_ctx
            L.llama_memory_clear(L.llama_get_memory(ctx), True)
            for start in range(0, len(tokens) - 1, self._score_batch):
                chunk = tokens[start : start + self._score_batch]
                self._decode_all(ctx, chunk, logits=True, pos0=start)
                for j in range(len(chunk)):
                    nxt = start + j + 1
                    if nxt >= len(tokens):
                        break
                    logits = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, j), shape=(n_vocab,))
                    peak = float(logits.max())
                    lse = peak + math.log(float(np.exp(logits - peak).sum()))
                    token = tokens[nxt]
                    result.append(
                        TokenLogprob(
                            token,
                            self.vocab.piece(token).decode("utf-8", "replace"),
                            float(logits[token]) - lse,
                        )
                    )
        return result

    def _decode_all(self, ctx: Any, tokens: Sequence[int], *, logits: bool, pos0: int = 0) -> None:
        batch = L.llama_batch_init(len(tokens), 0, 1)
        try:
            for i, token in enumerate(tokens):
                batch.token[i] = token
                batch.pos[i] = pos0 + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = logits
            batch.n_tokens = len(tokens)
            rc = L.llama_decode(ctx, batch)
            if rc != 0:
                raise EngineError(f"llama_decode failed with code {rc}")
        finally:
            L.llama_batch_free(batch)

    # -- lifecycle ---------------------------------------------------------------------------------
    def active_requests(self) -> int:
        running, waiting = self._batcher.counts()
        return running + waiting

    def failure(self) -> str | None:
        return self._batcher.failure

    def counts(self) -> tuple[int, int]:
        return self._batcher.counts()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._batcher.close()
        if self._draft is not None:
            self._draft.close()
        with self._aux_lock:
            for ctx in (self._embed_ctx, self._score_ctx, self._ctx):
                if ctx is not None:
                    L.llama_free(ctx)
            self._embed_ctx = self._score_ctx = None
        L.llama_model_free(self._model)

    def __enter__(self) -> LlamaCppEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
