"""The one module that talks to MLflow.

One run per stage execution, in an sqlite store at the project root (``<root>/mlflow.db``,
artifacts in ``<root>/mlruns``), where root is DVC_ROOT inside queued experiments so that every
experiment lands in the same store. Runs are tagged with the stage, the git revision and the DVC
experiment name. mlflow is imported lazily: importing rsis stays cheap and side-effect free.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rsis.runtime import git_revision, project_root

EXPERIMENT = "rsis"
DB_FILE = "mlflow.db"
ARTIFACT_DIR = "mlruns"


def tracking_uri(root: Path | None = None) -> str:
    root = root or project_root()
    return f"sqlite:///{(root / DB_FILE).resolve()}"


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'train': {'loss_weights': {'cls': 0.1}}} -> {'train.loss_weights.cls': 0.1}."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


class StageRun:
    """Handle on an active run: metrics per step, final metrics, artifacts."""

    def __init__(self, mlflow_module: Any) -> None:
        self._mlflow = mlflow_module

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        clean = {k.replace("@", "_at_"): float(v) for k, v in flatten(metrics).items()
                 if isinstance(v, int | float) and not isinstance(v, bool)}
        self._mlflow.log_metrics(clean, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if Path(path).exists():
            self._mlflow.log_artifact(str(path), artifact_path=artifact_path)


# MLflow 3's UI opens an experiment of unknown kind on its GenAI "Traces" page; this one is model
# training, so it opens on the runs table.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
# MLflow 3.17's UI opens on its GenAI overview whatever the tag says, unless the address asks for
# the model-training view: ui_url() gives that address.
TRAINING_VIEW = "workflowType=machine_learning"


def ui_url(root: Path | None = None, port: int = 5000, run_id: str | None = None) -> str:
    """The MLflow UI address of the project's runs table (or of one run) at ``http://127.0.0.1:port``."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    root = root or project_root()
    experiment = None
    if (root / DB_FILE).is_file():
        with _store_lock(root):
            experiment = MlflowClient(tracking_uri(root)).get_experiment_by_name(EXPERIMENT)
    base = f"http://127.0.0.1:{port}/"
    if experiment is None:
        return base
    page = f"#/experiments/{experiment.experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"{base}{page}?{TRAINING_VIEW}"



@contextlib.contextmanager
def stage_run(stage: str, params: Mapping[str, Any], root: Path | None = None) -> Iterator[StageRun]:
    """Open an MLflow run for one stage execution; it is marked FAILED if the block raises."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    root = root or project_root()
    mlflow.set_tracking_uri(tracking_uri(root))
    with _store_lock(root):  # the first connection creates the schema: one process at a time
        experiment_id = _experiment_id(mlflow, root)
    tags = {"stage": stage, "git_revision": git_revision(),
            "dvc_experiment": os.environ.get("DVC_EXP_NAME", ""),
            "dvc_baseline": os.environ.get("DVC_EXP_BASELINE_REV", "")}
    with mlflow.start_run(experiment_id=experiment_id, run_name=_run_name(stage), tags=tags):
        flat = {k: (list(v) if isinstance(v, tuple) else v) for k, v in flatten(params).items()}
        mlflow.log_params({k: str(v)[:6000] for k, v in flat.items()})
        yield StageRun(mlflow)


def _run_name(stage: str) -> str:
    exp = os.environ.get("DVC_EXP_NAME")
    return f"{stage}:{exp}" if exp else stage


@contextlib.contextmanager
def _store_lock(root: Path) -> Iterator[None]:
    """An exclusive lock on ``<root>/mlflow.db.lock``. Two queued experiments that open a new store at once
    both run its schema migration, and one fails ("table alembic_version already exists")."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (queued runs there can race on a new store)
        yield
        return
    with open(root / f"{DB_FILE}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _experiment_id(mlflow: Any, root: Path, attempts: int = 5) -> str:
    """Get or create the project's experiment; tolerate a concurrent creator (queued runs)."""
    for attempt in range(attempts):
        experiment = mlflow.get_experiment_by_name(EXPERIMENT)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return mlflow.create_experiment(EXPERIMENT, artifact_location=(root / ARTIFACT_DIR).resolve().as_uri(),
                                            tags=EXPERIMENT_TAGS)
        except Exception:  # another process created it first, or the db was briefly locked
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise RuntimeError("unreachable")


if __name__ == "__main__":  # python -m rsis.tracking [port]: the address make ui prints
    import sys
    print(ui_url(port=int(sys.argv[1]) if len(sys.argv) > 1 else 5000))
