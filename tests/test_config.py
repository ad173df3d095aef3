import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rsis.config import ConfigError, load_all, load_section

from conftest import REPO


def _write(tmp_path: Path, mutate) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    mutate(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_committed_params_are_valid():
    sections = load_all(REPO / "params.yaml")
    assert sections["model"].backbone in ("resnet18", "resnet34", "resnet50", "resnet101")


@pytest.mark.parametrize("mutate,key", [
    (lambda p: p["train"].update(learning_rate=0.1), "train.learning_rate"),
    (lambda p: p["train"]["loss_weights"].update(boxes=1.0), "train.loss_weights.boxes"),
    (lambda p: p["train"]["schedule"].pop("patience"), "train.schedule.patience"),
    (lambda p: p["train"]["augment"].update(hflip=2.0), "train.augment.hflip"),
    (lambda p: p["train"]["augment"].update(vflip=-0.5), "train.augment.vflip"),
    (lambda p: p["train"].update(launcher="slurm"), "train.launcher"),
    (lambda p: p["model"].pop("hidden_dim"), "model.hidden_dim"),
    (lambda p: p["data"]["shapes"].pop("noise"), "data.shapes.noise"),
    (lambda p: p["train"].update(epochs="ten"), "train.epochs"),
    (lambda p: p["train"].update(batch_size=2.5), "train.batch_size"),
    (lambda p: p["model"].update(skip_mode="add"), "model.skip_mode"),
    (lambda p: p["data"].update(dataset="pascal"), "data.dataset"),
    (lambda p: p["evaluate"].update(stop_threshold=1.5), "evaluate.stop_threshold"),
    (lambda p: p["evaluate"].update(test_flips=["diagonal"]), "evaluate.test_flips"),
    (lambda p: p["evaluate"].update(test_flips=["vertical", "vertical"]), "evaluate.test_flips"),
    (lambda p: p["evaluate"].update(flip_score=0.0), "evaluate.flip_score"),
    (lambda p: p["evaluate"].update(mask_score="yes"), "evaluate.mask_score"),
    (lambda p: p["data"]["shapes"].update(train=-1), "data.shapes.train"),
    (lambda p: p["train"].update(lr_decay_epochs=5), "train.lr_decay_epochs"),
])
def test_bad_params_name_the_key(tmp_path, mutate, key):
    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_all(path)


def test_int_is_accepted_where_float_expected(tmp_path):
    path = _write(tmp_path, lambda p: p["train"].update(lr_decoder=1))
    assert load_section("train", path).lr_decoder == 1.0


def test_missing_section_and_file(tmp_path):
    path = _write(tmp_path, lambda p: p.pop("evaluate"))
    with pytest.raises(ConfigError, match="missing section 'evaluate'"):
        load_section("evaluate", path)
    with pytest.raises(ConfigError, match="cannot read params file"):
        load_section("train", tmp_path / "nope.yaml")


def test_stage_fails_before_any_work(tmp_path):
    """A bad key stops the train stage at once: clear message, no checkpoint, no tracking run."""
    _write(tmp_path, lambda p: p["train"].update(epochz=3))
    result = subprocess.run([sys.executable, str(REPO / "stages" / "train.py")], cwd=tmp_path,
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "DVC_ROOT": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "unknown key train.epochz" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "models").exists() and not (tmp_path / "mlflow.db").exists()


def test_params_yaml_is_in_the_form_dvc_writes_back(tmp_path):
    """`dvc exp run -S key=value` rewrites params.yaml (dvc.utils.hydra.apply_overrides: inline lists
    become block lists, null becomes empty, long values wrap): the committed file is already in that
    form, so a one-value sweep is a one-line diff."""
    import shutil

    from dvc.utils.hydra import apply_overrides

    from conftest import REPO
    copy = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", copy)
    apply_overrides(str(copy), ["train.seed=7"])
    before, after = (REPO / "params.yaml").read_text().splitlines(), copy.read_text().splitlines()
    assert len(before) == len(after), "params.yaml is not in DVC's form: rewrite it with apply_overrides"
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(changed) == 1 and changed[0][1].startswith("  seed: 7"), changed
