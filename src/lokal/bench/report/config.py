"""The Run configuration and environment section: settings, platform and models, one column per result."""

from __future__ import annotations

from collections.abc import Sequence

from lokal.bench.report.common import DASH, fmt, fmt_mb, slo_text, uss_rate
from lokal.bench.result import BenchResult
from lokal.report.document import Section, Table


def _config_rows(r: BenchResult) -> list[tuple[str, str]]:
    p, t, c = r.platform, r.target, r.config
    cpus = ", ".join(
        x
        for x in (p.logical_cpus and f"{p.logical_cpus} logical", p.physical_cores and f"{p.physical_cores} physical")
        if x
    )
    mem = r.memory
    return [
        ("lokal version", r.lokal_version),
        ("created at", r.created_at.isoformat()),
        ("platform", f"{p.system} {p.release} ({p.machine})"),
        ("Python", p.python),
        ("CPU", p.cpu + (f" ({cpus})" if cpus else "")),
        ("memory (GB)", DASH if p.memory_bytes is None else f"{p.memory_bytes / 1e9:.1f}"),
        ("target", t.kind + (f" ({t.api} API)" if t.api else "")),
        ("URL", t.url or DASH),
        ("server version", t.server_version or DASH),
        ("engine", _engines_text(r)),
        ("models", ", ".join(dict.fromkeys(m.name for m in t.models)) or DASH),
        (
            "workload",
            c.workload
            + (f": {c.workload_description}" if c.workload_description else "")
            + (f" ({c.prompts_file})" if c.prompts_file else ""),
        ),
        ("prompt tokens", fmt(c.prompt_tokens)),
        ("max tokens", str(c.max_tokens)),
        ("requests per level", fmt(c.requests)),
        ("duration per level (s)", fmt(c.duration_s, 0)),
        ("concurrency", ", ".join(map(str, c.concurrency)) or DASH),
        ("rates (req/s)", ", ".join(f"{x:g}" for x in c.rates) or DASH),
        ("arrivals (rate levels)", c.arrival or DASH),
        ("max in flight (rate levels)", fmt(c.max_concurrency)),
        ("batch sizes", ", ".join(map(str, c.batch_sizes)) or DASH),
        ("warm-up requests", str(c.warmup)),
        ("seed", str(c.seed)),
        ("temperature", f"{c.temperature:g}"),
        ("threads", fmt(c.threads)),
        ("streaming", "yes" if c.stream else "no"),
        ("SLO", slo_text(c.slo)),
        (
            "memory sampling",
            DASH
            if mem is None
            else f"pid {mem.pid}{' + children' if mem.include_children else ''}, every {mem.interval_s * 1000:g} ms"
            + uss_rate(mem),
        ),
    ]


def _engines_text(r: BenchResult) -> str:
    """'llamacpp, then transformers (one after the other)' for a run of several engines."""
    engines = list(
        dict.fromkeys(e for e in (*(lv.engine for lv in r.levels), *(m.engine for m in r.target.models)) if e)
    )
    if not engines:
        return DASH if r.target.kind == "in-process" else "the server's own"
    if len(r.engines) > 1:
        return ", then ".join(turn.engine for turn in r.engines) + " (one after the other, in this process)"
    return ", ".join(engines)


def config_section(results: Sequence[BenchResult]) -> Section:
    many = len(results) > 1
    per_result = [_config_rows(r) for r in results]
    keys = [k for k, _ in per_result[0]]
    rows = tuple((key, *(dict(rows)[key] for rows in per_result)) for key in keys)
    headers = ("Setting", *([r.name for r in results] if many else ["Value"]))
    with_engine = any(m.engine for r in results for m in r.target.models)
    model_rows = tuple(
        (
            *([r.name] if many else []),
            m.name,
            *([m.engine or DASH] if with_engine else []),
            m.digest or DASH,
            fmt_mb(m.size_bytes),
            m.parameter_size or DASH,
            m.quantization or DASH,
            m.family or DASH,
        )
        for r in results
        for m in r.target.models
    )
    model_headers = (
        *(["Run"] if many else []),
        "Model",
        *(["Engine"] if with_engine else []),
        "Digest",
        "Size (MB)",
        "Parameters",
        "Quantization",
        "Family",
    )
    return Section(
        title="Run configuration and environment",
        tables=(
            Table(headers=headers, rows=rows, caption="Configuration"),
            Table(headers=model_headers, rows=model_rows, caption="Models", numeric=(2 + many + with_engine,)),
        ),
    )
