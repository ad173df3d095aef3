"""Stage analyze: how the model orders objects and where it fails (the paper's analyses)."""

from pathlib import Path

from rsis.reproducible import pin_cpu

pin_cpu()  # before torch is imported: train.reproducible pins the math libraries' ISA and threads

from rsis.config import load_section, to_dict  # noqa: E402
from rsis.files import write_json  # noqa: E402
from rsis.runtime import run_stage  # noqa: E402
from rsis.tracking import stage_run  # noqa: E402


def main() -> None:
    # imported here, after run_stage has read and checked every params section: a bad value fails at once,
    # without first importing torch and the model (~6 s)
    from rsis.analysis.run import FIGURES, TABLES, analyze

    paths, cfg = load_section("paths"), load_section("analyze")
    with stage_run("analyze", {"analyze": to_dict(cfg)}) as run:
        summary = analyze(paths, cfg)
        out = Path(paths.metrics) / "analyze.json"
        write_json(out, summary)
        run.log_metrics(summary)
        run.log_artifact(out)
        for name in FIGURES:
            run.log_artifact(Path(paths.figures) / name, artifact_path="figures")
        for name in TABLES:
            run.log_artifact(Path(paths.metrics) / "analysis" / name, artifact_path="tables")
    print(", ".join(f"{k} {v:.3f}" for k, v in summary.items()
                    if k.startswith(("tau_", "activation_tau_f0")) and not k.endswith("std") and v is not None))


if __name__ == "__main__":
    run_stage(main)
