"""The house rules, read from the code's own imports (every ``import``/``from`` statement, at any depth, parsed
with ``ast``): imports point one way, ``beam_jobs -> pipeline -> annotators -> schemas``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "armdata"


def imported_modules(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved against its package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(PKG.parent).with_suffix("").parts[:-1])
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def violations(room: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted((PKG / room).rglob("*.py")):
        for mod in sorted(imported_modules(path)):
            if any(mod == f or mod.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(PKG.parent)} imports {mod}")
    return bad


def test_imported_modules_sees_nested_relative_and_function_level_imports(tmp_path, monkeypatch):
    """The reader itself must catch the forms a rule-breaker would use, or the rules below could not fail."""
    probe = tmp_path / "armdata" / "annotators" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("import armdata.beam_jobs.cli\n"
                     "def f():\n    from armdata.pipeline.stages import annotate\n"
                     "from ..pipeline import fs\n")
    monkeypatch.setitem(globals(), "PKG", tmp_path / "armdata")
    assert {"armdata.beam_jobs.cli", "armdata.pipeline.stages.annotate", "armdata.pipeline.fs"} <= imported_modules(probe)
    assert violations("annotators", ("armdata.pipeline",)) != []


@pytest.mark.parametrize(
    "room, forbidden",
    [
        ("pipeline", ("armdata.beam_jobs", "armdata.cli")),
        ("annotators", ("armdata.pipeline", "armdata.beam_jobs", "armdata.cli", "apache_beam")),
        ("schemas", ("armdata.annotators", "armdata.pipeline", "armdata.beam_jobs", "armdata.cli")),
        ("synthetic", ("armdata.pipeline", "armdata.beam_jobs", "armdata.cli")),
        ("training", ("armdata.beam_jobs", "armdata.cli")),
    ],
)
def test_no_import_runs_back_up(room, forbidden):
    assert violations(room, forbidden) == []


def test_every_room_says_what_lives_there():
    """Each package has a docstring (what lives there, what it may import)."""
    missing = [str(p.relative_to(PKG.parent)) for p in sorted(PKG.rglob("__init__.py"))
               if not ast.get_docstring(ast.parse(p.read_text(encoding="utf-8")))]
    assert missing == []
