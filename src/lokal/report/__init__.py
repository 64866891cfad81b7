"""Rendering saved results: console text, Markdown, and one self-contained HTML page with charts.

A leaf toolkit: it knows documents, not what was measured. Each result kind turns its results into sections
beside its own code (`lokal.bench.report`, `lokal.cost.sections`, `lokal.cache.sections`, the card's charts);
nothing here imports them, nor anything of lokal but `lokal.files` and `lokal.errors`.

document.py  the renderer-neutral pieces (sections, tables, charts) every result kind is turned into
charts.py    matplotlib charts on their own Figures (Agg, never pyplot), reproducible PNG bytes (`render_png`);
             generic line and bar charts and the helpers a kind's own charts share
markdown.py  `render_markdown(doc, out.md)`: the .md plus one PNG per chart beside it
html.py      `render_html(doc) -> str` / `write_html(doc, path)`: one page, charts as data URIs, no requests
console.py   `render_text(doc)`: any document as text; `text_table`: aligned columns

Nothing is imported here, and matplotlib loads only when charts are built.
"""
