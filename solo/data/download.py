"""Fetch the E2E files into the data cache: microsoft/LoRA's three text files and the official zip.

Every write goes to a temporary file in the destination folder and is renamed into place only once
complete and checked, so an interrupted or failed download never leaves a file that a later run
would mistake for data. Failures raise DownloadError; `solo.data.setups` turns them into a
SoloError that names the searched folder, the URL and the config key to set.
"""

from __future__ import annotations

import http.client
import shutil
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from solo.atomic import replacing

LORA_BASE_URL = "https://raw.githubusercontent.com/microsoft/LoRA/main/examples/NLG/data/e2e"
OFFICIAL_ZIP_URL = "https://github.com/tuetschek/e2e-dataset/releases/download/v1.0.0/e2e-dataset.zip"
OFFICIAL_ZIP_NAME = "e2e-dataset.zip"
TIMEOUT_S = 60
_CHUNK = 1 << 16


class DownloadError(OSError):
    """A download or extraction that did not produce a complete file (offline, 404, truncated...)."""


def download(url: str, destination: Path, *, timeout: float = TIMEOUT_S) -> Path:
    """Stream `url` to `destination` with a progress bar; check the size; rename into place.

    The size check compares the bytes received with the server's Content-Length (when it sends
    one) and rejects an empty body, so a dropped connection is caught rather than cached.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            expected = response.headers.get("Content-Length")
            expected_size = int(expected) if expected is not None else None
            with replacing(destination) as temp_path, open(temp_path, "wb") as handle:
                received = 0
                with tqdm(total=expected_size, unit="B", unit_scale=True, unit_divisor=1024,
                          desc=f"download {destination.name}") as bar:
                    while chunk := response.read(_CHUNK):
                        handle.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                if received == 0:
                    raise DownloadError(f"{url} returned an empty body")
                if expected_size is not None and received != expected_size:
                    raise DownloadError(
                        f"{url}: received {received} bytes, expected {expected_size} (connection cut?)"
                    )
    except DownloadError:
        raise
    # URLError, HTTPError and timeouts are OSErrors; a cut connection may raise IncompleteRead.
    except (OSError, ValueError, http.client.HTTPException) as err:
        raise DownloadError(f"{url}: {err}") from err
    return destination


def ensure_lora_file(folder: Path, name: str, base_url: str = LORA_BASE_URL) -> Path:
    """Return `folder/name`, downloading it from microsoft/LoRA's e2e folder when absent."""
    target = Path(folder) / name
    if not target.is_file():
        download(f"{base_url.rstrip('/')}/{name}", target)
    return target


def ensure_official_file(folder: Path, name: str, zip_url: str = OFFICIAL_ZIP_URL) -> Path:
    """Return `folder/name`, fetching and unpacking the official release zip when absent.

    The zip is kept in the folder, so a later request for another CSV does not download it again.
    """
    target = Path(folder) / name
    if target.is_file():
        return target
    archive = Path(folder) / OFFICIAL_ZIP_NAME
    if not _is_complete_zip(archive):
        download(zip_url, archive)
    extract_member(archive, name, target)
    return target


def extract_member(archive: Path, name: str, target: Path) -> Path:
    """Copy the zip member whose base name is `name` (at any depth) to `target`, atomically.

    Members are looked up by base name because release zips nest their files in a top folder;
    only the requested member is written, so a hostile archive cannot place files elsewhere.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.namelist() if not m.endswith("/") and Path(m).name == name]
            if not members:
                raise DownloadError(f"{archive} has no member named {name}")
            with zf.open(min(members, key=len)) as source, replacing(target) as temp, \
                    open(temp, "wb") as handle:
                shutil.copyfileobj(source, handle, _CHUNK)
    except zipfile.BadZipFile as err:
        raise DownloadError(f"{archive} is not a valid zip ({err})") from err
    return target


def _is_complete_zip(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.testzip() is None
    except (zipfile.BadZipFile, OSError):
        return False
