"""Stage analyze: which order does the model emit objects in (Kendall tau vs. sorting strategies)."""

from pathlib import Path

from rsis.analysis import FIGURES, TABLES, analyze
from rsis.config import load_section, to_dict
from rsis.io import write_json
from rsis.runtime import run_stage
from rsis.tracking import stage_run


def main() -> None:
    paths, cfg = load_section("paths"), load_section("analyze")
    with stage_run("analyze", {"analyze": to_dict(cfg)}) as run:
        tables = Path(paths.metrics) / "analysis"
        summary = analyze(paths.data, paths.predictions, paths.figures, tables, cfg.num_figure_images,
                          cfg.figure_columns, cfg.pair_threshold, cfg.min_pair_count)
        out = Path(paths.metrics) / "analyze.json"
        write_json(out, summary)
        run.log_metrics(summary)
        run.log_artifact(out)
        for name in FIGURES:
            run.log_artifact(Path(paths.figures) / name, artifact_path="figures")
        for name in TABLES:
            run.log_artifact(tables / name, artifact_path="tables")
    print(", ".join(f"{k} {v}" for k, v in summary.items() if k.startswith("tau_") and not k.endswith("std")))


if __name__ == "__main__":
    run_stage(main)
