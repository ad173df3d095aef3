"""Stage convert: build the dataset named in params `data` into the project's one format."""

from pathlib import Path

from rsis.reproducible import pin_cpu

pin_cpu()  # before torch is imported: train.reproducible pins the math libraries' ISA and threads

from rsis.config import load_section, to_dict  # noqa: E402
from rsis.files import write_json  # noqa: E402
from rsis.runtime import run_stage  # noqa: E402
from rsis.tracking import stage_run  # noqa: E402


def main() -> None:
    # imported here, after run_stage has read and checked every params section: a bad value fails before
    # the converters and scipy are imported (as the torch stages fail before torch is)
    from rsis.datasets.convert import convert

    paths, data = load_section("paths"), load_section("data")
    # reported, not applied: images holding more instances than training keeps or the decoder can reach
    limits = {"train.max_objects": load_section("train").max_objects, "model.max_steps": load_section("model").max_steps}
    with stage_run("convert", {"data": to_dict(data)}) as run:
        stats = convert(data, paths.data, paths.raw, limits)
        # "<split>_split", so that `dvc exp show` columns (train_split.images) cannot be read as params (train.*)
        stats = {f"{split}_split": counts for split, counts in stats.items()}
        write_json(Path(paths.metrics) / "convert.json", stats)
        run.log_metrics(stats)
    print(f"converted {data.dataset} into {paths.data}: {stats}")


if __name__ == "__main__":
    run_stage(main)
