"""Stage analyze: which order does the model emit objects in (Kendall tau vs. sorting strategies)."""

from pathlib import Path

from rsis.analysis import SEQUENCES_FIGURE, analyze
from rsis.config import load_section, to_dict
from rsis.io import write_json
from rsis.runtime import run_stage
from rsis.tracking import stage_run


def main() -> None:
    paths, cfg = load_section("paths"), load_section("analyze")
    with stage_run("analyze", {"analyze": to_dict(cfg)}) as run:
        summary = analyze(paths.data, paths.predictions, paths.figures, cfg.num_figure_images, cfg.figure_columns)
        out = Path(paths.metrics) / "analyze.json"
        write_json(out, summary)
        run.log_metrics(summary)
        run.log_artifact(out)
        run.log_artifact(Path(paths.figures) / SEQUENCES_FIGURE, artifact_path="figures")
    print(", ".join(f"{k} {v}" for k, v in summary.items() if k.startswith("tau_") and not k.endswith("std")))


if __name__ == "__main__":
    run_stage(main)
