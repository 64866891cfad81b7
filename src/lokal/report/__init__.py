"""Rendering saved results: console text, Markdown, and one self-contained HTML page with charts.

document.py  the renderer-neutral pieces (sections, tables, charts) every result kind is turned into
bench.py     bench results -> sections (`bench_sections`, `bench_document`) and plain JSON (`summary_json`)
charts.py    matplotlib charts on their own Figures (Agg, never pyplot), reproducible PNG bytes (`render_png`)
markdown.py  `render_markdown(doc, out.md)`: the .md plus one PNG per chart beside it
html.py      `render_html(doc) -> str` / `write_html(doc, path)`: one page, charts as data URIs, no requests
console.py   `console_summary(results)`: one line per load level; `render_text(doc)`: any document as text

Nothing is imported here, and matplotlib loads only when charts are built: the console summary does not need it.
"""
