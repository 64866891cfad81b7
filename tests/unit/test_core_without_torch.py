"""The core stays free of torch: only lokal.engine.transformers may import torch/transformers.

Issue 6 promises that the core install and its tests pass without torch, and importing torch costs seconds
and hundreds of MB even where it is installed. So every module outside lokal.engine.transformers is imported
in a fresh interpreter (this process has long since imported whatever other tests needed), and none of the
hf packages may show up in sys.modules afterwards. It runs in both CI phases: with the hf extra installed it
catches a stray module-level import; in the core venv such an import would fail outright.
"""

from __future__ import annotations

import json
import subprocess
import sys

#: The packages the `hf` extra brings that nothing outside lokal.engine.transformers may import.
HF_MODULES = ("torch", "transformers", "sentence_transformers", "accelerate")
EXCLUDED = "lokal.engine.transformers"

# Runs in the child. The walk goes over files, not pkgutil.walk_packages: lokal.engine and lokal.server are
# namespace packages (no __init__.py), which pkgutil skips, and walk_packages imports every package it
# descends into, lokal.engine.transformers included, so it would import torch itself. __main__ is left out
# because importing it runs the CLI.
CHILD = r"""
import importlib, importlib.util, json, sys
from pathlib import Path

excluded, watched = sys.argv[1], sys.argv[2:]
names = []
for root in importlib.util.find_spec("lokal").submodule_search_locations:
    for file in sorted(Path(root).rglob("*.py")):
        parts = ("lokal", *file.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        if parts[-1] == "__main__" or name == excluded or name.startswith(excluded + "."):
            continue
        names.append(name)
for name in names:
    importlib.import_module(name)
print(json.dumps({
    "lokal": importlib.import_module("lokal").__file__,
    "imported": names,
    "hf_loaded": [m for m in watched if m in sys.modules],
}))
"""


def test_core_modules_import_without_torch_or_transformers():
    done = subprocess.run(
        [sys.executable, "-c", CHILD, EXCLUDED, *HF_MODULES], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"importing the core failed:\n{done.stderr[-3000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    imported = set(report["imported"])
    # The walk must reach the namespace packages and the modules that would most likely pull torch in.
    for expected in ("lokal", "lokal.cli", "lokal.engine.manager", "lokal.engine_specs", "lokal.server.app"):
        assert expected in imported, f"{expected} was not imported by the walk"
    assert not any(name.startswith(EXCLUDED) for name in imported)
    assert report["hf_loaded"] == [], (
        f"importing the core (from {report['lokal']}) loaded {', '.join(report['hf_loaded'])}: "
        f"only {EXCLUDED} may import them at module level; elsewhere import them inside a function, after "
        "lokal.engine_specs.require_engine()"
    )
