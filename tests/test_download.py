"""Downloads against a loopback server (resume, checksum) and safe archive extraction."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from loopback import serve
from rsis.datasets.fetch import DownloadError, extract, fetch


def _payload(tmp_path: Path, size: int = 300_000) -> tuple[Path, str]:
    root = tmp_path / "www"
    root.mkdir()
    data = bytes(range(256)) * (size // 256)
    (root / "archive.bin").write_bytes(data)
    return root, hashlib.md5(data).hexdigest()


def test_fetch_verifies_and_skips_a_complete_file(tmp_path):
    root, md5 = _payload(tmp_path)
    with serve(root) as server:
        dest = fetch(f"{server.url}/archive.bin", tmp_path / "dl" / "archive.bin", md5, progress=False)
        assert dest.read_bytes() == (root / "archive.bin").read_bytes()
        fetch(f"{server.url}/archive.bin", dest, md5, progress=False)
        assert len(server.requests) == 1  # the verified file is not fetched again
    assert not (tmp_path / "dl" / "archive.bin.part").exists()


def test_interrupted_download_resumes_with_a_range_request(tmp_path):
    root, md5 = _payload(tmp_path)
    dest = tmp_path / "dl" / "archive.bin"
    with serve(root) as server:
        server.cut_after = 100_000
        with pytest.raises(DownloadError, match="run again to resume"):
            fetch(f"{server.url}/archive.bin", dest, md5, progress=False)
        part = dest.with_name("archive.bin.part")
        assert not dest.exists() and part.stat().st_size == 100_000
        fetch(f"{server.url}/archive.bin", dest, md5, progress=False)
        assert server.requests[-1][1] == "bytes=100000-"
    assert dest.read_bytes() == (root / "archive.bin").read_bytes() and not part.exists()


def test_server_ignoring_range_restarts_from_zero(tmp_path):
    root, md5 = _payload(tmp_path)
    dest = tmp_path / "archive.bin"
    dest.with_name("archive.bin.part").write_bytes(b"stale bytes")
    with serve(root) as server:
        server.honour_range = False
        fetch(f"{server.url}/archive.bin", dest, md5, progress=False)
    assert dest.read_bytes() == (root / "archive.bin").read_bytes()


def test_checksum_mismatch_leaves_nothing_and_names_both_sums(tmp_path):
    root, md5 = _payload(tmp_path)
    dest = tmp_path / "archive.bin"
    with serve(root) as server, pytest.raises(DownloadError) as err:
        fetch(f"{server.url}/archive.bin", dest, "0" * 32, progress=False)
    assert "archive.bin" in str(err.value) and md5 in str(err.value) and "0" * 32 in str(err.value)
    assert list(tmp_path.glob("archive.bin*")) == []


def test_missing_url_is_a_clear_error(tmp_path):
    root, md5 = _payload(tmp_path)
    with serve(root) as server, pytest.raises(DownloadError, match="HTTP 404"):
        fetch(f"{server.url}/nope.tar", tmp_path / "nope.tar", md5, progress=False)


def _tar(path: Path, members: list[tarfile.TarInfo], payload: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info in members:
            if info.isreg():
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def test_extract_unpacks_atomically_and_skips_a_stamped_folder(tmp_path):
    archive = _tar(tmp_path / "ok.tgz", [_member("top/a.txt"), _member("top/sub/b.txt")])
    target = extract(archive, tmp_path / "out", stamp="abc")
    assert (target / "top/a.txt").read_bytes() == b"x" and (target / "top/sub/b.txt").is_file()
    (target / "top/a.txt").write_text("kept")
    extract(archive, target, stamp="abc")  # same stamp: not unpacked again
    assert (target / "top/a.txt").read_text() == "kept"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folders left


@pytest.mark.parametrize("member", [
    _member("../escape.txt"),
    _member("top/link", tarfile.SYMTYPE, "/etc/passwd"),
    _member("top/link", tarfile.SYMTYPE, "../../outside"),
    _member("top/dev", tarfile.CHRTYPE),
], ids=["dotdot", "symlink-absolute", "symlink-outside", "device"])
def test_extract_refuses_members_that_escape(tmp_path, member):
    archive = _tar(tmp_path / "bad.tgz", [_member("top/fine.txt"), member])
    with pytest.raises(ValueError, match="bad.tgz: refusing"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.txt").exists()


def test_extract_strips_absolute_tar_paths_into_the_folder(tmp_path):
    archive = _tar(tmp_path / "abs.tgz", [_member("/abs/path.txt")])
    assert (extract(archive, tmp_path / "out") / "abs/path.txt").is_file()


@pytest.mark.parametrize("name", ["../escape.txt", "/abs.txt"])
def test_extract_zip_refuses_paths_outside(tmp_path, name):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fine.txt", "ok")
        zf.writestr(name, "evil")
    with pytest.raises(ValueError, match="outside the target folder"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.txt").exists()


def test_extract_zip(tmp_path):
    archive = tmp_path / "ok.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("A1/plant001_rgb.png", b"png")
    assert (extract(archive, tmp_path / "out") / "A1/plant001_rgb.png").read_bytes() == b"png"
