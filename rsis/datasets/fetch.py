"""Fetching and unpacking dataset archives: the only code in the project that reaches the network.

``fetch`` downloads with HTTP range requests into ``<name>.part`` next to the destination, so an
interrupted download continues where it stopped; the archive appears under its final name only
after its md5 matched (a mismatch deletes the partial file and names the URL and both sums).
``extract`` unpacks a tar or zip archive into a temporary sibling folder and renames it into
place on success, refusing members that would land outside it (absolute paths, ``..``, links
pointing out, device files): tar through the standard library's ``data`` filter, zip by checking
every member before anything is written.
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import stat
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from rsis.files import atomic_directory

CHUNK = 1 << 20
SOURCE_STAMP = ".source"


class DownloadError(RuntimeError):
    """A download that could not complete or did not verify."""


def md5sum(path: str | Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, dest: str | Path, md5: str, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` unless a file with the right md5 is already there."""
    dest = Path(dest)
    if dest.is_file():
        found = md5sum(dest)
        if found == md5:
            return dest
        raise DownloadError(f"{dest} exists but its md5 is {found}, expected {md5}: "
                            f"delete it and run again to download {url}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    if progress and not sys.stderr.isatty():  # no bar in a log: one line per archive instead
        print(f"downloading {url} -> {dest}" + (f" (resuming after {offset} bytes)" if offset else ""),
              file=sys.stderr, flush=True)
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if offset and response.status != 206:  # the server ignored the range: start again
                offset = 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            with open(part, "ab" if offset else "wb") as out, tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True, desc=f"download {dest.name}",
                    disable=None if progress else True) as bar:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    bar.update(len(block))
            received = part.stat().st_size
            if total is not None and received < total:  # urllib does not raise on a short chunked read
                raise DownloadError(f"download of {url} stopped after {received} of {total} bytes; {part} "
                                    f"keeps them, run again to resume")
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # range not satisfiable: the partial file is already complete
            pass
        else:
            raise DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise DownloadError(f"download of {url} failed ({exc}); {part} keeps the "
                            f"{part.stat().st_size if part.exists() else 0} bytes received, "
                            f"run again to resume") from None
    got = md5sum(part)
    if got != md5:
        part.unlink()
        raise DownloadError(f"{url}: md5 of the downloaded file is {got}, expected {md5}; "
                            f"the partial file was deleted, run again to download it afresh")
    part.replace(dest)
    return dest


def extract(archive: str | Path, target: str | Path, stamp: str = "", copy_plain: bool = False) -> Path:
    """Unpack a .tar/.tgz/.tar.gz/.zip archive so that its content is ``target`` (replaced
    atomically on success). Members escaping the folder or special files are refused. With
    ``copy_plain``, a file that is no archive (e.g. CVPPP's .h5) is copied into ``target`` instead.

    ``stamp`` (e.g. the archive's md5) is stored in ``target/.source``; when it is already there
    the archive is not unpacked again.
    """
    archive, target = Path(archive), Path(target)
    if stamp and (target / SOURCE_STAMP).is_file() and (target / SOURCE_STAMP).read_text() == stamp:
        return target
    if not archive.is_file():
        raise FileNotFoundError(f"archive {archive} not found")
    with atomic_directory(target) as tmp:
        (tmp / SOURCE_STAMP).write_text(stamp)
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tar:
                try:
                    tar.extractall(tmp, filter="data")
                except tarfile.FilterError as exc:
                    raise ValueError(f"{archive}: refusing unsafe member: {exc}") from None
        elif copy_plain:
            shutil.copyfile(archive, tmp / archive.name)
        else:
            raise ValueError(f"{archive} is neither a tar nor a zip archive")
    return target


def _extract_zip(archive: Path, out: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        for info in members:  # check everything before writing anything
            name = PurePosixPath(info.filename)
            mode = info.external_attr >> 16
            if name.is_absolute() or ".." in name.parts or "\\" in info.filename:
                raise ValueError(f"{archive}: refusing member {info.filename!r}: path outside the target folder")
            if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise ValueError(f"{archive}: refusing member {info.filename!r}: not a regular file or folder")
        for info in members:
            path = out / info.filename
            if info.is_dir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst)
