"""Stage evaluate: the paper's inference protocol and COCO segm and bbox AP on the test split."""

from pathlib import Path

from rsis.reproducible import pin_cpu

pin_cpu()  # before torch is imported: train.reproducible pins the math libraries' ISA and threads

from rsis.config import load_section, to_dict  # noqa: E402
from rsis.files import atomic_path, write_json  # noqa: E402
from rsis.runtime import run_stage  # noqa: E402
from rsis.tracking import stage_run  # noqa: E402


def main() -> None:
    # imported here, after run_stage has read and checked every params section: a bad value fails at once,
    # without first importing torch and the model (~6 s)
    from rsis.evaluation.report import paper_comparison
    from rsis.evaluation.run import evaluate

    paths, cfg, data = load_section("paths"), load_section("evaluate"), load_section("data")
    with stage_run("evaluate", {"evaluate": to_dict(cfg)}) as run:
        metrics = evaluate(paths, cfg, data.dataset)
        report = paper_comparison(data.dataset, metrics)  # before writing anything: a failure keeps both files
        out = Path(paths.metrics) / "evaluate.json"
        write_json(out, metrics)
        with atomic_path(Path(paths.metrics) / "paper_comparison.md") as tmp:
            tmp.write_text(report)
        run.log_metrics(metrics)
        run.log_artifact(out)
    segm = metrics["segm"]
    print(f"test segm AP {segm['AP']:.3f}  AP50 {segm['AP50']:.3f}  AP75 {segm['AP75']:.3f}  "
          f"bbox AP50 {metrics['bbox']['AP50']:.3f}")


if __name__ == "__main__":
    run_stage(main)
