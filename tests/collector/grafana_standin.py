"""A stand-in for Grafana's HTTP API (no Grafana server can be installed here).

It answers the endpoints `edugap dashboards push` uses as Grafana's HTTP API documentation
describes them (docs: http_api/other#health-api, http_api/folder, http_api/dashboard), checks
each request against that description (method, path, auth, JSON body and its fields) and keeps
what was saved, so a test sees what a real Grafana would hold. A request it does not know, or
one that breaks the documented contract, is recorded in `violations` and answered 400/404.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

UID = re.compile(r"^[a-zA-Z0-9_-]{1,40}$")


@dataclass
class Grafana:
    """What the stand-in holds and saw."""

    token: str = "glsa_test-token"
    user: tuple[str, str] = ("admin", "s3cret-pass")
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> {dashboard, meta}
    requests: list[tuple[str, str]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    url: str = ""

    def authorized(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme == "Bearer":
            return value == self.token
        if scheme == "Basic":
            return base64.b64decode(value).decode() == ":".join(self.user)
        return False


class _Handler(BaseHTTPRequestHandler):
    grafana: Grafana

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            self.grafana.violations.append(f"{self.command} {self.path} without JSON content type")
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return json.loads(raw or b"null")

    def _route(self) -> None:
        g = self.grafana
        g.requests.append((self.command, self.path))
        path = self.path.split("?")[0]
        if self.command == "GET" and path == "/api/health":  # open, as in Grafana
            self._send(200, {"commit": "5b85c4c2fc", "database": "ok", "version": "11.1.0"})
            return
        if not g.authorized(self.headers.get("Authorization", "")):
            self._send(401, {"message": "invalid API key"})
            return
        if self.command == "GET" and (m := re.fullmatch(r"/api/folders/([^/]+)", path)):
            found = g.folders.get(m.group(1))
            self._send(200, found) if found else self._send(
                404, {"message": "folder not found", "status": "not-found"})  # fmt: skip
        elif self.command == "POST" and path == "/api/folders":
            self._create_folder(self._body())
        elif self.command == "GET" and (m := re.fullmatch(r"/api/dashboards/uid/([^/]+)", path)):
            found = g.dashboards.get(m.group(1))
            self._send(200, found) if found else self._send(404, {"message": "Dashboard not found"})
        elif self.command == "POST" and path == "/api/dashboards/db":
            self._save_dashboard(self._body())
        else:
            g.violations.append(f"unexpected {self.command} {self.path}")
            self._send(404, {"message": "Not found"})

    def _create_folder(self, body: Any) -> None:
        g = self.grafana
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("title"), str)
            or not body["title"]
        ):
            g.violations.append(f"POST /api/folders without a title: {body!r}")
            self._send(400, {"message": "folder title cannot be empty"})
            return
        uid = body.get("uid") or f"f{len(g.folders) + 1}"
        if not UID.match(uid):
            g.violations.append(f"POST /api/folders with a bad uid {uid!r}")
            self._send(400, {"message": "uid contains illegal characters"})
            return
        if uid in g.folders:
            self._send(409, {"message": "a folder with the same uid already exists"})
            return
        folder = {"id": len(g.folders) + 1, "uid": uid, "title": body["title"],
                  "url": f"/dashboards/f/{uid}/", "version": 1}  # fmt: skip
        g.folders[uid] = folder
        self._send(200, folder)

    def _save_dashboard(self, body: Any) -> None:
        g = self.grafana
        board = body.get("dashboard") if isinstance(body, dict) else None
        problems = []
        if not isinstance(board, dict) or not board.get("title") or not board.get("uid"):
            problems.append("no dashboard with a title and a uid")
        elif board.get("id") is not None and board["uid"] not in g.dashboards:
            problems.append("an id for a dashboard that does not exist")
        if not isinstance(body.get("overwrite", False), bool):
            problems.append("overwrite is not a boolean")
        if "folderId" in body:
            problems.append("folderId is deprecated: use folderUid")
        if problems:
            g.violations.append(f"POST /api/dashboards/db: {'; '.join(problems)}")
            self._send(400, {"message": "; ".join(problems)})
            return
        assert isinstance(board, dict)
        folder = body.get("folderUid") or ""
        if folder and folder not in g.folders:
            self._send(400, {"message": "folder not found"})
            return
        current = g.dashboards.get(board["uid"])
        version = 1 if current is None else current["dashboard"]["version"] + 1
        if (
            current is not None
            and not body.get("overwrite")
            and (board.get("version") != current["dashboard"]["version"])
        ):
            self._send(412, {"message": "The dashboard has been changed by someone else",
                             "status": "version-mismatch"})  # fmt: skip
            return
        ident = current["dashboard"]["id"] if current else len(g.dashboards) + 1
        saved = {**board, "id": ident, "version": version}
        url = f"/d/{board['uid']}/{re.sub(r'[^a-z0-9]+', '-', board['title'].lower()).strip('-')}"
        g.dashboards[board["uid"]] = {"dashboard": saved, "meta": {"folderUid": folder, "url": url}}
        self._send(200, {"id": ident, "uid": board["uid"], "url": url, "status": "success",
                         "version": version, "slug": url.rsplit("/", 1)[1]})  # fmt: skip

    do_GET = _route
    do_POST = _route
    do_PUT = _route
    do_DELETE = _route


@contextmanager
def grafana_standin() -> Iterator[Grafana]:
    """The stand-in on a free port of 127.0.0.1; `.url` is its address."""
    state = Grafana()
    handler = type("Handler", (_Handler,), {"grafana": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
