"""Stage train: fit RSIS on the converted train split, validating on val every epoch.

With ``train.launcher: torchrun`` the stage starts itself again under torchrun (DDP over
``train.nproc_per_node`` processes); under torchrun only rank 0 tracks, logs and writes files.
"""

from pathlib import Path

from rsis.reproducible import pin_cpu

pin_cpu()  # before torch is imported: train.reproducible pins the math libraries' ISA and threads

from rsis.config import load_section, to_dict  # noqa: E402
from rsis.files import write_json  # noqa: E402
from rsis.runtime import machine, run_stage  # noqa: E402
from rsis.tracking import stage_run  # noqa: E402


def main() -> None:
    # imported here, after run_stage has read and checked every params section: a bad value fails at once,
    # without first importing torch and the model (~6 s)
    from rsis.training import distributed
    from rsis.training.fit import HISTORY_FILE, fit

    paths, model, train = load_section("paths"), load_section("model"), load_section("train")
    if train.launcher == "torchrun" and not distributed.launched_by_torchrun():
        raise SystemExit(distributed.relaunch_with_torchrun(__file__, train.nproc_per_node))
    if not distributed.is_main_process():
        fit(paths, model, train)
        return
    with stage_run("train", {"model": to_dict(model), "train": to_dict(train)}) as run:
        result = fit(paths, model, train, log_epoch=lambda epoch, row: run.log_metrics(row, step=epoch))
        last = result.history.iloc[-1]
        metrics = {"best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss,
                   "final_train_loss": float(last["train_total"]), "final_val_loss": float(last["val_total"]),
                   "train_seconds": round(result.seconds, 1), "device": result.device}
        # the last bits of a CPU run depend on the machine and software too (README "Reproducibility")
        write_json(Path(paths.metrics) / "train.json", {**metrics, "machine": machine()})
        run.log_metrics(metrics)
        run.log_artifact(Path(paths.metrics) / HISTORY_FILE)


if __name__ == "__main__":
    run_stage(main)
