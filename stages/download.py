"""Stage download: fetch, verify and unpack the archives of the dataset named in params `data`.

The only stage that uses the network. Downloads resume after an interruption (HTTP range) and
an archive is used only once its md5 matches.
"""

from pathlib import Path

from rsis.config import load_section, to_dict
from rsis.datasets.sources import download
from rsis.files import write_json
from rsis.runtime import run_stage
from rsis.tracking import stage_run


def main() -> None:
    paths, data = load_section("paths"), load_section("data")
    with stage_run("download", {"data.dataset": data.dataset, **({data.dataset: to_dict(getattr(data, data.dataset))}
                                                                 if hasattr(data, data.dataset) else {})}) as run:
        manifest = download(data, paths.raw)
        write_json(Path(paths.raw) / "manifest.json", manifest)
        run.log_metrics({"archives": len(manifest["archives"])})
    print(f"download {data.dataset}: {len(manifest['archives'])} archive(s) ready under {paths.raw}")


if __name__ == "__main__":
    run_stage(main)
