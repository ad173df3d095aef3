"""A loopback HTTP file server for download tests: serves a folder, honours ``Range: bytes=N-``
(206), counts requests, and can be told to cut the next response short to simulate a dropped
connection, or to stall mid-body so that a client can be killed during a transfer."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class LoopbackServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.cut_after: int | None = None  # bytes of body to send before dropping the next response
        self.honour_range = True
        self.stall_after: int | None = None  # bytes to send before the response hangs (until shutdown)
        self.stalled = threading.Event()  # set once a response has stalled
        self.closing = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                server.requests.append((self.path, self.headers.get("Range")))
                path = server.root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start = 0
                rng = self.headers.get("Range")
                if rng and server.honour_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    self.wfile.write(body[:server.cut_after])
                    server.cut_after = None
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the client sees a truncated body
                    return
                if server.stall_after is not None:
                    self.wfile.write(body[:server.stall_after])
                    self.wfile.flush()
                    server.stalled.set()
                    server.closing.wait(60)  # the client is mid-transfer now
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


@contextlib.contextmanager
def serve(root: Path) -> Iterator[LoopbackServer]:
    server = LoopbackServer(root)
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.closing.set()
        server.httpd.shutdown()
        server.httpd.server_close()
