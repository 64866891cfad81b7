"""Rendering saved results: console text, Markdown, and one self-contained HTML page with charts.

document.py  the renderer-neutral pieces (sections, tables, charts) every result kind is turned into
"""
