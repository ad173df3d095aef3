import pytest

from rsis.files import atomic_directory, atomic_path, read_json, write_json


def test_failed_write_keeps_previous_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"AP50": 0.5})
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text('{"AP50": 0.')  # half-written
            raise RuntimeError("killed mid-write")
    assert read_json(path) == {"AP50": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"], "temporary file left behind"


def test_failed_directory_build_keeps_previous_directory(tmp_path):
    out = tmp_path / "data"
    with atomic_directory(out) as tmp:
        (tmp / "train.json").write_text("{}")
    with pytest.raises(RuntimeError):
        with atomic_directory(out) as tmp:
            (tmp / "partial.json").write_text("{")
            raise RuntimeError("conversion failed")
    assert sorted(p.name for p in out.iterdir()) == ["train.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_read_json_names_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        read_json(bad)
    with pytest.raises(FileNotFoundError, match="missing.json does not exist"):
        read_json(tmp_path / "missing.json")
