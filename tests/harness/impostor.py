"""Something that is not GitLab at a URL a user may type into spec.gitlab.url: a login page, a proxy's error page,
an unrelated JSON API. One loopback HTTP server; the first path segment of the URL picks the answer, so each
`url(kind)` is a different bad `spec.gitlab.url` (the operator appends `/api/v4/...`). It counts the requests per
kind, so a test can assert that a bad Runner does not hammer what it points at."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# kind -> (status, content type, body, extra headers)
ANSWERS: dict[str, tuple[int, str, bytes, dict[str, str]]] = {
    "html-login": (200, "text/html; charset=utf-8", b"<!DOCTYPE html><html><body>Sign in</body></html>", {}),
    "html-no-type": (200, "", b"<html><body>Welcome to nginx!</body></html>", {}),
    "json-object": (200, "application/json", json.dumps({"status": "ok", "version": "1.2.3"}).encode(), {}),
    "json-list": (200, "application/json", json.dumps([{"name": "x"}, 3]).encode(), {}),
    "json-string": (200, "application/json", json.dumps("hello").encode(), {}),
    "json-id-only": (201, "application/json", json.dumps({"id": 41}).encode(), {}),
    "json-id-text": (201, "application/json", json.dumps({"id": "forty-one", "token": 7}).encode(), {}),
    # GitLab's create answer with a token that is none (issue #27): never stored, never Ready.
    "json-token-null": (201, "application/json", json.dumps({"id": 41, "token": None}).encode(), {}),
    "json-token-empty": (201, "application/json", json.dumps({"id": 41, "token": ""}).encode(), {}),
    "json-token-shape": (201, "application/json", json.dumps({"id": 41, "token": "ok-41-0123456789"}).encode(), {}),
    "see-other": (303, "text/html", b"", {"Location": "/dashboard"}),
    "empty-200": (200, "application/json", b"", {}),
    "text-200": (200, "text/plain", b"OK\n", {}),
    "redirect-login": (302, "text/html", b"", {"Location": "/users/sign_in"}),
    "html-404": (404, "text/html", b"<html><body>Not Found</body></html>", {}),
    "html-502": (502, "text/html", b"<html><body>Bad Gateway</body></html>", {}),
    "json-500": (500, "application/json", json.dumps({"message": "500 Internal Server Error"}).encode(), {}),
    "rate-limited": (429, "text/plain", b"Retry later\n", {"Retry-After": "30"}),
    "teapot": (418, "text/plain", b"I'm a teapot", {}),
}


class Impostor:
    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.methods: Counter[tuple[str, str]] = Counter()  # (kind, method)
        impostor = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                kind = self.path.lstrip("/").split("/", 1)[0]
                impostor.requests[kind] += 1
                impostor.methods[kind, self.command] += 1
                status, content_type, body, headers = ANSWERS.get(kind, ANSWERS["html-404"])
                self.send_response(status)
                if content_type:
                    self.send_header("Content-Type", content_type)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, kind: str) -> str:
        assert kind in ANSWERS, kind
        return f"http://127.0.0.1:{self._server.server_address[1]}/{kind}"

    @contextmanager
    def running(self) -> Iterator[Impostor]:
        self._thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
