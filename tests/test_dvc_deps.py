"""Each DVC stage depends on the package modules its script really imports, and on no others:
editing a figure reruns analyze only, the leaf metrics evaluate (and analyze), the model train."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from conftest import REPO

STAGES = ("download", "convert", "train", "evaluate", "analyze")


def _module_file(name: str) -> Path | None:
    base = REPO / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_files(stage: str) -> set[str]:
    """The rsis files ``stages/<stage>.py`` imports, directly or through other rsis modules,
    counting imports inside functions too (read from the source, nothing is run)."""
    seen: set[Path] = set()
    todo = [REPO / "stages" / f"{stage}.py"]
    while todo:
        tree = ast.parse(todo.pop().read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if name.split(".")[0] != "rsis":
                    continue
                parts = name.split(".")
                for k in range(1, len(parts) + 1):  # the packages on the way, then the module itself
                    file = _module_file(".".join(parts[:k]))
                    if file is not None and file not in seen:
                        seen.add(file)
                        todo.append(file)
    return {str(f.relative_to(REPO)) for f in seen}


@pytest.mark.parametrize("stage", STAGES)
def test_stage_deps_are_exactly_the_modules_it_imports(stage):
    deps = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]["deps"]
    listed = {d for d in deps if d.startswith("rsis")}
    assert "rsis" not in listed, "the whole package as a dependency reruns every stage on any edit"
    assert listed == imported_files(stage), f"dvc.yaml stages.{stage}.deps: list exactly these rsis files"


def test_a_figure_edit_reruns_only_analyze_and_the_model_not_convert():
    deps = {s: set(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][s]["deps"]) for s in STAGES}
    assert [s for s in STAGES if "rsis/figures.py" in deps[s]] == ["analyze"]
    assert [s for s in STAGES if "rsis/leaf_metrics.py" in deps[s]] == ["evaluate", "analyze"]
    assert [s for s in STAGES if "rsis/model.py" in deps[s]] == ["train", "evaluate", "analyze"]
