"""solo.data.download: size check, atomic writes, zip handling (no network: fakes and 127.0.0.1)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from solo.data import download
from solo.data.download import DownloadError


class _FakeResponse(io.BytesIO):
    def __init__(self, body: bytes, length: int | None) -> None:
        super().__init__(body)
        self.headers = {} if length is None else {"Content-Length": str(length)}


def _serve_fake(monkeypatch, body: bytes, length: int | None) -> None:
    monkeypatch.setattr(download.urllib.request, "urlopen", lambda url, timeout: _FakeResponse(body, length))


@pytest.mark.parametrize("body, length, words", [(b"abc", 10, "received 3 bytes, expected 10"),
                                                 (b"", None, "empty body")])
def test_short_or_empty_body_is_rejected_and_nothing_written(monkeypatch, tmp_path: Path, body, length, words):
    _serve_fake(monkeypatch, body, length)
    with pytest.raises(DownloadError, match=words):
        download.download("https://example.invalid/x", tmp_path / "x.txt")
    assert list(tmp_path.iterdir()) == []


def test_complete_body_lands_without_temp_files(monkeypatch, tmp_path: Path):
    _serve_fake(monkeypatch, b"a||b\n" * 50_000, 250_000)  # several read chunks
    target = download.download("https://example.invalid/x", tmp_path / "sub" / "x.txt")
    assert target.read_bytes() == b"a||b\n" * 50_000
    assert [p.name for p in target.parent.iterdir()] == ["x.txt"]


def test_file_url_download(tmp_path: Path):
    source = tmp_path / "source.txt"
    source.write_bytes(b"m||r\n")
    target = download.ensure_lora_file(tmp_path / "cache", "source.txt", base_url=tmp_path.as_uri())
    assert target.read_bytes() == b"m||r\n"


def test_corrupt_cached_zip_is_fetched_again(http_root, tmp_path: Path):
    url, served = http_root
    with zipfile.ZipFile(served / "e2e-dataset.zip", "w") as zf:
        zf.writestr("e2e-dataset/devset.csv", "mr,ref\nm,r\n")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / download.OFFICIAL_ZIP_NAME).write_bytes(b"PK\x03\x04 truncated")
    path = download.ensure_official_file(cache, "devset.csv", f"{url}/e2e-dataset.zip")
    assert path.read_text() == "mr,ref\nm,r\n"


def test_zip_without_the_member_is_an_error(tmp_path: Path):
    archive = tmp_path / download.OFFICIAL_ZIP_NAME
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("e2e-dataset/README.md", "no data")
    with pytest.raises(DownloadError, match="no member named trainset.csv"):
        download.ensure_official_file(tmp_path, "trainset.csv", "https://example.invalid/zip")
    assert sorted(p.name for p in tmp_path.iterdir()) == [download.OFFICIAL_ZIP_NAME]
