"""A local HTTP server on 127.0.0.1 for the download tests (tests never touch the internet)."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


class _LyingHandler(_QuietHandler):
    """Announces more bytes than it sends, like a connection cut mid-download."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"name : A||partial\n")
        self.close_connection = True


@pytest.fixture()
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, folder it serves)."""
    root = tmp_path / "served"
    root.mkdir()
    yield from _serve(functools.partial(_QuietHandler, directory=str(root)), root)


@pytest.fixture()
def truncating_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    yield from _serve(_LyingHandler, tmp_path)


def _serve(handler, root: Path) -> Iterator[tuple[str, Path]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
