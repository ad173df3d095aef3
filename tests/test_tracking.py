"""The MLflow store shared by the stages and by queued experiments (rsis/tracking.py)."""

import multiprocessing as mp

from rsis.tracking import EXPERIMENT, stage_run, tracking_uri


def _one_stage(root: str, stage: str, barrier) -> None:
    import mlflow  # imported before the barrier: the processes reach the store together
    assert mlflow
    barrier.wait()
    with stage_run(stage, {"train": {"seed": 1}}, root=__import__("pathlib").Path(root)) as run:
        run.log_metrics({"segm": {"AP50": 0.5}})


def test_processes_opening_a_new_store_at_once_all_log(tmp_path):
    """Queued experiments (`dvc queue start -j 2`) start stages at the same moment on a store
    that does not exist yet: each must create or join it, not fail on its schema."""
    ctx = mp.get_context("spawn")
    n = 3
    barrier = ctx.Barrier(n)
    procs = [ctx.Process(target=_one_stage, args=(str(tmp_path), f"stage{i}", barrier)) for i in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * n
    import mlflow
    mlflow.set_tracking_uri(tracking_uri(tmp_path))
    runs = mlflow.search_runs(experiment_names=[EXPERIMENT])
    assert sorted(runs["tags.stage"]) == [f"stage{i}" for i in range(n)]
    assert (runs["metrics.segm.AP50"] == 0.5).all()
