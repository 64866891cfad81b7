"""Report rendering from synthetic bench results (tests/report_fixtures.py): the numbers in the tables are the
hand-computed ones, Markdown writes every chart, the HTML page is self-contained and reproducible, and a saved
result re-renders to the same page."""

from __future__ import annotations

import base64
import json
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from matplotlib.figure import Figure

from lokal.bench.report.console import console_summary
from lokal.bench.report.definitions import metric_definitions
from lokal.bench.report.document import bench_document, bench_sections, summary_json
from lokal.bench.result import BenchResult, LoadLevel, ResultError, save
from lokal.bench.result import load as load_result
from lokal.cli.report import report
from lokal.report.charts import bar_chart, render_png
from lokal.report.console import render_text
from lokal.report.document import Chart, Document, Section, Table
from lokal.report.html import render_html, write_html
from lokal.report.markdown import render_markdown
from report_fixtures import bench_result, request

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALL_CHARTS = {
    "latency-ttft",
    "latency-itl",
    "latency-e2el",
    "throughput-concurrency",
    "throughput-batch",
    "throughput-rate",
    "latency-model-size",
    "memory",
    "cold-start",
    "slo-search",
}


def section(doc_sections: list[Section], title: str) -> Section:
    return next(s for s in doc_sections if s.title == title)


def row(table: Table, *first: str) -> dict[str, str]:
    """The row whose first cells are `first`, as {header: cell}."""
    for r in table.rows:
        if tuple(r[: len(first)]) == first:
            return dict(zip(table.headers, r, strict=True))
    raise AssertionError(f"no row {first} in {table.caption}: {[r[: len(first)] for r in table.rows]}")


def all_charts(sections: tuple[Section, ...] | list[Section]) -> list[Chart]:
    out: list[Chart] = []
    for s in sections:
        out += [*s.charts, *all_charts(s.subsections)]
    return out


@pytest.fixture(scope="module")
def result() -> BenchResult:
    return bench_result()


@pytest.fixture(scope="module")
def html_page(result: BenchResult) -> str:
    return render_html(bench_document([result]))


# --- sections and tables -------------------------------------------------------------------------------------


def test_summary_table_has_hand_computed_figures(result: BenchResult) -> None:
    table = section(bench_sections([result]), "Summary").tables[0]
    c1 = row(table, "smollm2:135m", "concurrency 1")
    assert c1["Requests (N)"] == "4" and c1["Completed"] == "4" and c1["Failed"] == "0"
    assert c1["Duration (s)"] == "0.30"  # 0.06 + 0.07 + 0.08 + 0.09 back to back
    assert c1["Requests/s"] == "13.33"  # 4 / 0.30
    assert c1["Output tokens/s"] == "66.7"  # 4 requests x 5 tokens / 0.30
    assert c1["Goodput (req/s)"] == "10.00"  # TTFT 20, 30, 40 <= 45 ms and TPOT 10 <= 12 ms: 3 / 0.30
    assert c1["SLO attainment"] == "75.0 %"  # 3 of 4
    assert c1["Token counts from"] == "engine"
    rate = row(table, "smollm2:135m", "2 req/s")
    assert (rate["Failed"], rate["Error rate"]) == ("1", "20.0 %")  # 1 of 5 refused


def test_latency_table_has_hand_computed_percentiles(result: BenchResult) -> None:
    latency = section(bench_sections([result]), "Latency")
    c1 = next(s for s in latency.subsections if s.title == "concurrency 1").tables[0]
    ttft = row(c1, "TTFT (ms)", "smollm2:135m")
    # TTFT = [20, 30, 40, 50]: mean 35, p50 35, p99 = 40 + 0.97 * (50 - 40) = 49.7
    assert (ttft["N"], ttft["mean"], ttft["p50"], ttft["p99"], ttft["max"]) == ("4", "35.0", "35.0", "49.7", "50.0")
    assert row(c1, "ITL (ms)", "smollm2:135m")["N"] == "16"  # 4 gaps in each of 4 requests
    assert row(c1, "TPOT (ms)", "smollm2:135m")["p50"] == "10.0"  # (E2EL - TTFT) / (5 - 1) = 40 / 4
    assert row(c1, "E2EL (ms)", "smollm2:135m")["p50"] == "75.0"  # median of 60, 70, 80, 90
    # server-side beside client-side: prompt eval = TTFT - 5 -> mean 30; 5 tokens in 40 ms -> 125 tokens/s
    assert row(c1, "server prompt eval (ms)", "smollm2:135m")["mean"] == "30.0"
    assert row(c1, "server tokens/s (output / eval)", "smollm2:135m")["p50"] == "125.0"
    assert row(c1, "client decode tokens/s (1000 / TPOT)", "smollm2:135m")["p50"] == "100.0"  # 1000 / 10 ms
    assert not any(r[0] == "E2EL from schedule (ms)" for r in c1.rows)  # closed loop: sent on time
    assert row(c1, "TTFT (ms)", "gemma3:270m")["p50"] == "105.0"  # 60 x (1, 1.5, 2, 2.5): (90 + 120) / 2


def test_e2el_from_schedule_shows_the_late_send(result: BenchResult) -> None:
    latency = section(bench_sections([result]), "Latency")
    rate = next(s for s in latency.subsections if s.title == "2 req/s").tables[0]
    # E2EL = TTFT + 4 x 11 ms: 74, 76, 79, 75; request 2 was sent 100 ms late -> from schedule 74, 76, 179, 75
    assert row(rate, "E2EL (ms)")["p50"] == "75.5"  # (75 + 76) / 2
    sched = row(rate, "E2EL from schedule (ms)")
    assert (sched["mean"], sched["p50"], sched["max"]) == ("101.0", "75.5", "179.0")  # (74+76+179+75) / 4 = 101
    assert row(rate, "send lag (ms)")["max"] == "100.0"


def test_sections_config_warnings_and_definitions(result: BenchResult) -> None:
    sections = bench_sections([result])
    titles = [s.title for s in sections]
    assert titles == [
        "Summary",
        "Latency",
        "Throughput",
        "Models",
        "Memory",
        "Cold start",
        "SLO",
        "Warnings and errors",
        "Run configuration and environment",
        "Metric definitions",
    ]
    config = dict(section(sections, "Run configuration and environment").tables[0].rows)
    assert config["seed"] == "42" and config["lokal version"] == "0.1.0"
    assert config["created at"] == "2025-06-01T12:30:00+00:00"
    assert config["CPU"].startswith("Intel(R) Xeon(R)") and config["SLO"] == "TTFT ≤ 45 ms, TPOT ≤ 12 ms"
    models = section(sections, "Run configuration and environment").tables[1]
    assert row(models, "smollm2:135m")["Digest"] == "sha256:" + "a1" * 32
    memory = section(sections, "Memory").tables[0]
    assert row(memory, "whole run")["Peak RSS (MB)"] == "165.0"  # 150 + 2 x 7 (last level) + 1 MB
    cold = section(sections, "Cold start").tables[0]
    assert row(cold, "smollm2:135m")["First / warm"] == "7.4×"  # 260 / 35
    sizes = section(sections, "Models").tables[0]
    assert row(sizes, "gemma3:270m")["Size (MB)"] == "253.0"
    slo = section(sections, "SLO")
    assert any("highest concurrency" in p and p.endswith(": 2.") for p in slo.paragraphs)
    warnings = section(sections, "Warnings and errors")
    assert "prompt cache reuse was not randomised: repeated prompts may look fast" in warnings.paragraphs
    assert any("100 ms after their intended time" in p for p in warnings.paragraphs)
    assert row(warnings.tables[0], "smollm2:135m", "2 req/s")["Error"] == "HTTP 503: server busy, queue full"
    names = [n.split(":")[0] for n in section(sections, "Metric definitions").notes]
    assert {"TTFT", "ITL", "TPOT", "E2EL", "E2EL from schedule", "goodput", "Token counts from"} <= set(names)


def test_metric_definitions_are_plain_text_data() -> None:
    defs = {d.split(": ", 1)[0]: d.split(": ", 1)[1] for d in metric_definitions()}
    assert defs["TPOT"].startswith("(e2el - ttft) / (output_tokens - 1)")  # no code marks
    assert "coordinated omission" in defs["E2EL from schedule"]


def test_metric_definitions_survive_python_oo() -> None:
    """Under -OO docstrings are gone: the definitions are data, so reports and cards keep them."""
    code = (
        "from lokal.bench.metrics import DEFINITIONS\n"
        "assert [name for name, _ in DEFINITIONS][:4] == ['TTFT', 'ITL', 'TPOT', 'E2EL'], DEFINITIONS\n"
        "assert all(text for _, text in DEFINITIONS)\n"
    )
    done = subprocess.run([sys.executable, "-OO", "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_token_source_and_saturation_are_reported(result: BenchResult) -> None:
    level = result.levels[0]
    chunked = [request(i, 0.1 * i, 0.02, 0.01, source="chunks", server=False) for i in range(3)]
    odd = level.model_copy(
        update={"samples": chunked, "client": level.client.model_copy(update={"saturated": True, "cpu_percent": 99})}
    )
    changed = result.model_copy(update={"levels": [odd]})
    sections = bench_sections([changed])
    assert row(section(sections, "Summary").tables[0], "concurrency 1")["Token counts from"] == "chunks"
    warnings = section(sections, "Warnings and errors").paragraphs
    assert any("counted as stream chunks" in w for w in warnings)
    assert any("client itself was the bottleneck (CPU 99 %)" in w for w in warnings)
    c1 = section(sections, "Latency").subsections[0].tables[0]
    assert not any(r[0].startswith("server") for r in c1.rows)  # no server timings reported: no rows


def test_comparison_puts_results_side_by_side(result: BenchResult) -> None:
    other = bench_result("ollama smollm2", slowdown=1.5, kind="ollama")
    sections = bench_sections([result, other])
    config = section(sections, "Run configuration and environment").tables[0]
    assert config.headers == ("Setting", "smollm2:135m, gemma3:270m @ in-process", "ollama smollm2")
    assert row(config, "target")[config.headers[2]] == "ollama (ollama API)"
    c1 = next(s for s in section(sections, "Latency").subsections if s.title == "concurrency 1").tables[0]
    # one metric's figures next to each other: TTFT of the in-process run, then of the 1.5x slower one
    assert row(c1, "TTFT (ms)", "smollm2:135m @ in-process")["p50"] == "35.0"
    assert row(c1, "TTFT (ms)", "ollama smollm2 · smollm2:135m")["p50"] == "52.5"  # 35 x 1.5
    ids = [c.id for c in all_charts(sections)]
    assert len(ids) == len(set(ids))
    assert {"slo-search-1", "slo-search-2"} <= set(ids)  # one search chart per result


def test_a_minimal_result_has_no_empty_sections(result: BenchResult) -> None:
    minimal = result.model_copy(
        update={"levels": result.levels[:1], "memory": None, "cold_start": [], "slo_search": None, "warnings": []}
    )
    sections = bench_sections([minimal])
    assert "Memory" not in [s.title for s in sections] and "Cold start" not in [s.title for s in sections]
    assert "Throughput" not in [s.title for s in sections]  # one concurrency: no sweep to draw
    assert {c.id for c in all_charts(sections)} == {"latency-ttft", "latency-itl", "latency-e2el"}


# --- charts --------------------------------------------------------------------------------------------------


def test_every_chart_has_title_axis_labels_and_legend_when_needed(result: BenchResult) -> None:
    for results in ([result], [result, bench_result("slow", slowdown=2.0)]):
        charts = all_charts(bench_sections(results))
        assert {c.id.removesuffix("-1").removesuffix("-2") for c in charts} == ALL_CHARTS
        for chart in charts:
            fig = Figure()
            ax = fig.add_subplot()
            chart.draw(ax)
            assert ax.get_title(), chart.id
            assert ax.get_xlabel() or chart.id == "cold-start", chart.id
            assert ax.get_ylabel(), chart.id
            assert chart.alt, chart.id
            if len(results) > 1 and chart.id != "cold-start" and not chart.id.startswith("slo-search"):
                assert ax.get_legend() is not None or fig.legends, chart.id


def test_png_is_reproducible_and_800_by_450(result: BenchResult) -> None:
    chart = all_charts(bench_sections([result]))[0]
    first, second = render_png(chart), render_png(chart)
    assert first == second
    assert first.startswith(PNG_MAGIC)
    assert struct.unpack(">II", first[16:24]) == (800, 450)  # IHDR width, height
    assert b"Matplotlib" not in first  # no "Software" tag: bytes do not change with the matplotlib version


def test_charts_never_touch_pyplot() -> None:
    """Run in a fresh interpreter: pyplot's global figure state must never be imported by the renderer."""
    tests_dir = Path(__file__).resolve().parents[1]
    code = (
        f"import sys; sys.path.insert(0, {str(tests_dir)!r})\n"
        "from report_fixtures import bench_result\n"
        "from lokal.bench.report.document import bench_document\n"
        "from lokal.report.html import render_html\n"
        "render_html(bench_document([bench_result()]))\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


# --- Markdown ------------------------------------------------------------------------------------------------


def test_markdown_has_tables_and_writes_every_png(result: BenchResult, tmp_path: Path) -> None:
    written = render_markdown(bench_document([result]), tmp_path / "out" / "report.md")
    md_path = written[0]
    text = md_path.read_text(encoding="utf-8")
    assert text.startswith("# lokal bench: ")
    assert "| smollm2:135m | concurrency 1 | 4 | 4 | 0 | 0.0 % | 0.30 | 13.33 | 66.7 |" in text
    assert "| TTFT (ms) | smollm2:135m | 4 | 35.0 | 11.2 | 20.0 | 35.0 | 47.0 | 48.5 | 49.7 | 50.0 |" in text
    assert "|---|---|---:|" in text  # numbers right-aligned
    pngs = sorted(p.name for p in written[1:])
    assert pngs == sorted(f"report-{cid}.png" for cid in ALL_CHARTS)
    for name in pngs:
        assert f"]({name})" in text
        assert (md_path.parent / name).read_bytes().startswith(PNG_MAGIC)
    assert not list(md_path.parent.glob("*.tmp")) and not list(md_path.parent.glob(".*"))


# --- HTML ----------------------------------------------------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_html_is_self_contained(html_page: str) -> None:
    parser = _Tags()
    parser.feed(html_page)
    names = [t for t, _ in parser.tags]
    assert "script" not in names and "link" not in names and "iframe" not in names
    for tag, attrs in parser.tags:
        for key in ("src", "href", "srcset", "action", "data"):
            value = attrs.get(key) or ""
            assert not value.startswith(("http:", "https:", "//")), (tag, key, value[:80])
            if key == "href" and key in attrs:
                assert value.startswith("#"), value  # only in-page links
    assert "@import" not in html_page and "url(" not in html_page
    images = [attrs for tag, attrs in parser.tags if tag == "img"]
    assert len(images) == len(ALL_CHARTS)
    for attrs in images:
        src = attrs["src"] or ""
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(PNG_MAGIC)
        assert attrs.get("alt")
    assert "default-src 'none'" in html_page  # CSP: the browser itself refuses anything else
    assert "<caption>Throughput and errors per load level" in html_page
    assert '<td class="num">13.33</td>' in html_page


def test_html_is_deterministic_and_escaped(result: BenchResult, html_page: str) -> None:
    assert render_html(bench_document([bench_result()])) == html_page
    hostile = result.model_copy(update={"label": "<script>alert(1)</script>"})
    page = render_html(bench_document([hostile]))
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_saved_result_re_renders_to_the_same_page(result: BenchResult, html_page: str, tmp_path: Path) -> None:
    loaded = load_result(save(result, tmp_path / "run.json"))
    assert render_html(bench_document([loaded])) == html_page
    assert summary_json([loaded]) == summary_json([result])


def test_write_html_is_atomic(result: BenchResult, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    out.write_text("previous report", encoding="utf-8")

    def broken(ax: object) -> None:
        raise RuntimeError("chart failed")

    doc = Document(title="t", sections=(Section(title="s", charts=(Chart(id="x", title="x", draw=broken),)),))
    with pytest.raises(RuntimeError):
        write_html(doc, out)
    assert out.read_text(encoding="utf-8") == "previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temp file left behind
    write_html(bench_document([result]), out)
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert out.stat().st_mode & 0o644 == 0o644  # shareable, not mkstemp's private 0600


def test_renderers_are_generic_over_sections(tmp_path: Path) -> None:
    """Cost and cache reports build their own Sections; every renderer draws them the same way."""
    cost = Section(
        title="Cost",
        paragraphs=("Local cost from $0.50/hour.",),
        tables=(
            Table(
                headers=("Where", "$ / 1k requests"), rows=(("local", "0.42"), ("api | cloud", "1.10")), numeric=(1,)
            ),
        ),
        charts=(bar_chart("cost", "Cost per 1,000 requests", ["local", "cloud"], {"$": [0.42, 1.10]}, ylabel="$"),),
        notes=("Break-even: 1,200 requests/hour",),
    )
    doc = Document(title="lokal cost", sections=(cost,))
    page = render_html(doc)
    assert page.count("<img ") == 1 and '<td class="num">0.42</td>' in page and "<dt>Break-even</dt>" in page
    md = render_markdown(doc, tmp_path / "cost.md")
    text = md[0].read_text(encoding="utf-8")
    assert "| api \\| cloud | 1.10 |" in text and "![Cost per 1,000 requests](cost-cost.png)" in text
    assert md[1].name == "cost-cost.png"
    plain = render_text(doc)
    assert "Cost\n====" in plain and "[chart: Cost per 1,000 requests]" in plain
    lines = plain.splitlines()
    header, local, cloud = [x for x in lines if x.startswith(("Where", "local", "api |"))]
    # numbers right-aligned under their header: all three lines end in the same column
    assert header.endswith("$ / 1k requests") and local.endswith(" 0.42") and cloud.endswith(" 1.10")
    assert len(header) == len(local) == len(cloud)


# --- console and CLI -----------------------------------------------------------------------------------------


def test_console_summary_one_line_per_level(result: BenchResult) -> None:
    text = console_summary([result])
    level_lines = [line for line in text.splitlines() if line.startswith("  ") and " ok " in line]
    assert len(level_lines) == len(result.levels) == 8
    c1 = level_lines[0]
    assert "concurrency 1" in c1 and "4/4 ok" in c1 and "13.33 req/s" in c1
    assert "TTFT p50/p99 35.0/49.7 ms" in c1 and "goodput 10.00 req/s (75.0 %)" in c1
    assert "memory: peak RSS 165.0 MB, peak USS 105.0 MB" in text
    assert "highest concurrency meeting the SLO: 2" in text
    assert "warning: smollm2:135m, 2 req/s: 1 of 5 requests failed" in text


@click.group()
def _group() -> None:
    pass


_group.add_command(report)


def test_cli_report_renders_saved_results(result: BenchResult, tmp_path: Path) -> None:
    a = save(result, tmp_path / "a.json")
    b = save(bench_result("slow", slowdown=2.0), tmp_path / "b.json")
    runner = CliRunner()
    plain = runner.invoke(_group, ["report", str(a)])
    assert plain.exit_code == 0, plain.output
    assert plain.stdout == console_summary([result]) + "\n"
    as_json = runner.invoke(_group, ["report", str(a), str(b), "--json"])
    data = json.loads(as_json.stdout)
    assert [d["name"] for d in data] == [result.name, "slow"]
    level0 = data[0]["levels"][0]
    assert level0["median_ttft_ms"] == pytest.approx(35.0) and level0["p99_ttft_ms"] == pytest.approx(49.7)
    assert level0["request_goodput"] == pytest.approx(10.0)  # 3 good / 0.30 s
    assert data[1]["levels"][0]["median_ttft_ms"] == pytest.approx(70.0)  # slowdown 2
    html, md = tmp_path / "r" / "cmp.html", tmp_path / "r" / "cmp.md"
    files = runner.invoke(_group, ["report", str(a), str(b), "--html", str(html), "--markdown", str(md)])
    assert files.exit_code == 0, files.output
    assert files.stdout == ""  # files only: the "wrote" notes go to stderr
    assert html.read_text(encoding="utf-8") == render_html(bench_document([result, bench_result("slow", slowdown=2.0)]))
    assert (tmp_path / "r" / "cmp-slo-search-2.png").exists()


def test_cli_bad_file_is_one_line_and_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from lokal.cli import cli, main

    monkeypatch.setitem(cli.commands, "report", report)  # the lead registers it; the test must not depend on that
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    assert main(["report", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"Error: {bad} is not JSON (line 1: Expecting property name enclosed in double quotes)"
    with pytest.raises(ResultError, match="no result file"):
        load_result(tmp_path / "missing.json")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"kind": "bench", "schema_version": 99}), encoding="utf-8")
    assert main(["report", str(wrong)]) == 1
    assert "schema version 99" in capsys.readouterr().err


def test_empty_level_list_renders(result: BenchResult) -> None:
    """A run that crashed before its first level still leaves a readable report (config and warnings)."""
    empty = result.model_copy(update={"levels": [], "memory": None, "slo_search": None})
    page = render_html(bench_document([empty]))
    assert "Run configuration and environment" in page
    level = LoadLevel(model="m", mode="sync", duration_s=0.0, samples=[])
    assert "sync" in console_summary([result.model_copy(update={"levels": [level], "memory": None})])


def test_cli_report_renders_cost_and_cache_results_too(result: BenchResult, tmp_path: Path) -> None:
    """`lokal cost` and `lokal cache` save results `lokal report` re-renders: after the bench sections, each
    brings its own (through its `ResultKind`, in `lokal.cli.report.kinds`); two cost results with the same
    chart id get distinct PNGs."""
    from decimal import Decimal

    from lokal.cache.scan import scan_caches
    from lokal.config import Settings
    from lokal.cost.compute import compute_cost, hardware

    hw = hardware(usd_per_hour=Decimal("0.5"), watts=Decimal("100"), usd_per_kwh=Decimal("0.2"))
    cost = save(compute_cost(result, hw, ()), tmp_path / "cost.json")
    cache = save(scan_caches(Settings.from_env()).report, tmp_path / "cache.json")  # empty stores (conftest)
    bench = save(result, tmp_path / "bench.json")
    runner = CliRunner()
    md = tmp_path / "all.md"
    done = runner.invoke(_group, ["report", str(bench), str(cost), str(cost), str(cache), "--markdown", str(md)])
    assert done.exit_code == 0, done.output
    text = md.read_text(encoding="utf-8")
    assert text.index("## Summary") < text.index("## Cost") < text.index("## Model cache")
    cost_pngs = sorted(p.name for p in tmp_path.glob("all-cost*.png"))
    assert len(cost_pngs) == 2 and all(f"]({name})" in text for name in cost_pngs)
    plain = runner.invoke(_group, ["report", str(cost)])
    assert plain.exit_code == 0 and plain.stdout.startswith("Cost\n====")
    as_json = json.loads(runner.invoke(_group, ["report", str(bench), str(cost), "--json"]).stdout)
    assert [d["kind"] for d in as_json] == ["bench", "cost"]
    prune = tmp_path / "plan.json"
    prune.write_text(json.dumps({"kind": "cache-prune"}), encoding="utf-8")
    refused = runner.invoke(_group, ["report", str(prune)])
    assert isinstance(refused.exception, ResultError)
    assert "holds a 'cache-prune' result; lokal report renders bench, cost and cache results" in str(refused.exception)
