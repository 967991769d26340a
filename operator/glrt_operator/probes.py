"""The liveness probe of a standby replica: healthy while it waits for the Lease (Kopf serves the probe once it
leads, on the same address)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class _Standby(BaseHTTPRequestHandler):
    path_served = "/healthz"

    def do_GET(self) -> None:
        ok = self.path.split("?", 1)[0] == self.path_served
        body = b'{"standby": true}' if ok else b""
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return  # one probe every few seconds is not worth a log line


@contextmanager
def standby_probe(url: str | None) -> Iterator[None]:
    """Serve `url` (e.g. http://0.0.0.0:8080/healthz) while the block runs; nothing when `url` is None."""
    if url is None:
        yield
        return
    parts = urlsplit(url)
    handler = type("Standby", (_Standby,), {"path_served": parts.path or "/healthz"})
    server = ThreadingHTTPServer((parts.hostname or "0.0.0.0", parts.port or 80), handler)
    thread = threading.Thread(target=server.serve_forever, name="standby-probe", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
