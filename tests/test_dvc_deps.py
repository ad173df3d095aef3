"""Each DVC stage depends on the package modules its script really imports, and on no others:
editing a figure reruns analyze only, the leaf metrics evaluate, the model train and what follows.
The stage subpackages (training, evaluation, analysis) do not import each other."""

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


def rsis_imports(file: Path) -> list[str]:
    """The rsis modules (and imported names) one file imports, inside functions too."""
    names = []
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return [n for n in names if n.split(".")[0] == "rsis"]


def imported_files(stage: str) -> set[str]:
    """The rsis files ``stages/<stage>.py`` imports, directly or through other rsis modules,
    counting imports inside functions too (read from the source, nothing is run)."""
    seen: set[Path] = set()
    todo = [REPO / "stages" / f"{stage}.py"]
    while todo:
        for name in rsis_imports(todo.pop()):
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
    assert [s for s in STAGES if "rsis/analysis/figures.py" in deps[s]] == ["analyze"]
    assert [s for s in STAGES if "rsis/evaluation/leaf_metrics.py" in deps[s]] == ["evaluate"]
    assert [s for s in STAGES if "rsis/core/model.py" in deps[s]] == ["train", "evaluate", "analyze"]


STAGE_PACKAGES = ("training", "evaluation", "analysis")


@pytest.mark.parametrize("package", STAGE_PACKAGES)
def test_stage_packages_do_not_import_each_other(package):
    """rsis/training, rsis/evaluation and rsis/analysis each build on core/, datasets/ and the
    top-level helpers only, so one stage's code can change without touching another's."""
    others = {f"rsis.{p}" for p in STAGE_PACKAGES if p != package}
    crossing = {f"{file.relative_to(REPO)}: {name}" for file in (REPO / "rsis" / package).glob("*.py")
                for name in rsis_imports(file) if ".".join(name.split(".")[:2]) in others}
    assert not crossing, f"rsis/{package} imports another stage's package: {sorted(crossing)}"


def test_core_and_datasets_import_no_stage_package():
    crossing = {f"{file.relative_to(REPO)}: {name}" for sub in ("core", "datasets")
                for file in (REPO / "rsis" / sub).glob("*.py") for name in rsis_imports(file)
                if ".".join(name.split(".")[:2]) in {f"rsis.{p}" for p in STAGE_PACKAGES}}
    assert not crossing, sorted(crossing)
