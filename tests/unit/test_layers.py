"""The layers of lokal, checked from its own imports by import-linter (the contracts in pyproject.toml).

Why a test: a newcomer adding an engine, a bench target or a suite should find every place to touch by reading
downwards, and a lower layer that reaches up (the store into the engine, a toolkit into one of its users) is how
that stops being true without anyone deciding it. docs/architecture.md draws the layers. import-linter counts
every import, in a function or under TYPE_CHECKING too: a lazy import is still a dependency.

The last two tests break a copy of the package on purpose, so a contract that checks nothing (a wrong container
name, a layer list that no longer matches the tree) fails here instead of passing quietly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT = (
    "import sys; from importlinter.cli import lint_imports; "
    "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))"
)


def _lint(source_root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the project's contracts, on the `lokal` package found under `source_root`."""
    env = {**os.environ, "PYTHONPATH": str(source_root)}
    return subprocess.run(
        [sys.executable, "-c", LINT, str(ROOT / "pyproject.toml")],
        cwd=source_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "src" / "lokal", tmp_path / "lokal", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_lokal_keeps_its_layers_and_has_no_import_circles() -> None:
    done = _lint(ROOT / "src")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout


def _lint_broken(tmp_path: Path, module: str, addition: str) -> subprocess.CompletedProcess[str]:
    """Lint a copy of the package where `module` (a path under lokal/) ends with `addition` (made if missing)."""
    root = _copy(tmp_path)
    path = root / "lokal" / module
    path.write_text((path.read_text() if path.exists() else "") + addition)
    done = _lint(root)
    assert done.returncode != 0, done.stdout[-2000:]
    return done


def test_an_import_from_a_higher_layer_breaks_the_contract(tmp_path: Path) -> None:
    up = "\n\ndef _up() -> None:\n    import lokal.engine.manager  # noqa\n"
    done = _lint_broken(tmp_path, "store/names.py", up)
    assert "lokal.store.names -> lokal.engine.manager" in done.stdout


def test_an_import_circle_breaks_the_contract(tmp_path: Path) -> None:
    circle = "\n\ndef _circle() -> None:\n    import lokal.cost.sections  # noqa\n"
    done = _lint_broken(tmp_path, "cost/model.py", circle)
    assert "no import circles BROKEN" in done.stdout


def test_a_module_without_a_layer_breaks_the_contract(tmp_path: Path) -> None:
    done = _lint_broken(tmp_path, "newcomer.py", '"""A module nobody gave a layer."""\n')
    assert "lokal.newcomer" in done.stdout
