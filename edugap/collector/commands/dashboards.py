"""`edugap dashboards push`: put edugap's Grafana dashboards into a department's Grafana.

Through Grafana's HTTP API with grafana-client: GET /api/health (is it Grafana?), the folder
by uid (POST /api/folders when it is missing), then per dashboard GET
/api/dashboards/uid/<uid> and, unless it is already the same, POST /api/dashboards/db with
overwrite, so a push replaces edugap's dashboards by uid and leaves every other one alone.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edugap.collector.registry.places import fold
from edugap.collector.safetext import terminal
from edugap.protocol.redact import redact

SOURCE_DIR = Path(__file__).resolve().parents[3] / "dashboards"  # a checkout or the sdist
MESSAGE = "edugap dashboards push"


class PushError(RuntimeError):
    """The push cannot go on; the message says what to check."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("dashboards", help="Grafana dashboards", description=__doc__)
    sub = parser.add_subparsers(dest="dashboards_command", metavar="ACTION", required=True)
    push = sub.add_parser(
        "push",
        help="create or update edugap's dashboards in a Grafana",
        description="Create the folder if it is missing, then create each dashboard or "
        "overwrite it by uid; says for each whether it was created, updated or unchanged.",
    )
    push.add_argument("--url", required=True, help="Grafana's address, e.g. https://grafana:3000")
    push.add_argument("--token", help="a service account token (Administration > Service "
                      "accounts; role Editor); or $GRAFANA_TOKEN")  # fmt: skip
    push.add_argument("--user", help="a Grafana user (with --password) instead of a token")
    push.add_argument("--password", help="the user's password; or $GRAFANA_PASSWORD")
    push.add_argument("--folder", default="edugap", help="folder title (default: edugap)")
    push.add_argument("--dir", type=Path, default=None, metavar="DIR",
                      help=f"the dashboards' JSON files (default: {SOURCE_DIR.name}/ of the "
                      "edugap source, or ./dashboards)")  # fmt: skip
    push.set_defaults(func=push_command)


def folder_uid(title: str) -> str:
    """A folder uid from its title: "Giáo dục" -> "giao-duc" (Grafana: at most 40 of
    a-z A-Z 0-9 - _)."""
    return re.sub(r"[^a-z0-9]+", "-", fold(title)).strip("-")[:40] or "edugap"


def dashboard_files(directory: Path | None) -> list[Path]:
    candidates = [directory] if directory else [SOURCE_DIR, Path.cwd() / "dashboards"]
    for d in candidates:
        if d is not None and d.is_dir() and sorted(d.glob("*.json")):
            return sorted(d.glob("*.json"))
    shown = directory or SOURCE_DIR
    raise PushError(f"no dashboard JSON files in {shown}: give --dir DIR (dashboards/ of the "
                    "edugap source)")  # fmt: skip


def _same(ours: dict[str, Any], theirs: dict[str, Any]) -> bool:
    """True when Grafana's copy holds every key of ours unchanged (it adds id and version)."""
    return all(theirs.get(k) == v for k, v in ours.items() if k not in ("id", "version"))


def push(api: Any, files: list[Path], folder: str, say: Callable[[str], None]) -> None:
    """Create the folder if needed and every dashboard or its new version (see module doc)."""
    from grafana_client.client import GrafanaClientError

    health = api.client.GET("/health")
    if not isinstance(health, dict) or "version" not in health:
        raise PushError("it does not answer like Grafana's HTTP API (GET /api/health)")
    uid = folder_uid(folder)
    try:
        found = api.folder.get_folder(uid)
        say(f"folder {found.get('title', folder)!r} (uid {uid}): exists")
    except GrafanaClientError as e:
        if e.status_code != 404:
            raise
        api.folder.create_folder(folder, uid=uid)
        say(f"folder {folder!r} (uid {uid}): created")
    for path in files:
        board = json.loads(path.read_text(encoding="utf-8"))
        board.pop("id", None)
        name = f"dashboard {board.get('title')!r} (uid {board.get('uid')})"
        try:
            current = api.dashboard.get_dashboard(board["uid"])
        except GrafanaClientError as e:
            if e.status_code != 404:
                raise
            current = None
        if current is not None:
            in_folder = current.get("meta", {}).get("folderUid") == uid
            if in_folder and _same(board, current.get("dashboard", {})):
                say(f"{name}: unchanged (version {current['dashboard'].get('version')})")
                continue
        saved = api.dashboard.update_dashboard(
            {"dashboard": board, "folderUid": uid, "overwrite": True, "message": MESSAGE}
        )
        if current is None:
            say(f"{name}: created, version {saved.get('version')}, {saved.get('url')}")
        else:
            before = current.get("dashboard", {}).get("version")
            say(f"{name}: updated, version {before} -> {saved.get('version')}")


def push_command(args: argparse.Namespace) -> int:
    import os

    try:
        import niquests
        from grafana_client.api import GrafanaApi
        from grafana_client.client import GrafanaClientError, GrafanaException
    except ImportError:
        print("error: edugap dashboards push needs grafana-client, which is not installed "
              "here: pip install 'edugap[grafana]' (best in its own environment, see "
              "docs/coverage.md)", file=sys.stderr)  # fmt: skip
        return 2

    token = args.token or os.environ.get("GRAFANA_TOKEN")
    password = args.password or os.environ.get("GRAFANA_PASSWORD")
    if bool(token) == bool(args.user):
        print("error: give --token (or $GRAFANA_TOKEN), or --user with --password",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.user and not password:
        print("error: --user needs --password (or $GRAFANA_PASSWORD)", file=sys.stderr)
        return 2
    url = str(args.url).rstrip("/")
    where = f"Grafana at {redact(url)}"
    try:
        files = dashboard_files(args.dir)
        credential: str | tuple[str, str] = token or (str(args.user), str(password))
        api = GrafanaApi.from_url(url, credential=credential, timeout=30)
        push(api, files, args.folder, lambda line: print(terminal(line)))
    except PushError as e:
        print(f"error: {terminal(where)}: {terminal(e)}", file=sys.stderr)
        return 2
    except GrafanaClientError as e:
        why = f"answered {e.status_code}: {e.message}"
        if e.status_code in (401, 403):
            why = "refused the credentials: check --token, or --user and --password"
        print(f"error: {terminal(where)} {terminal(why)}", file=sys.stderr)
        return 2
    except GrafanaException as e:
        print(f"error: {terminal(where)}: {terminal(e.message)}", file=sys.stderr)
        return 2
    except (niquests.exceptions.RequestException, ValueError) as e:
        print(f"error: cannot reach {terminal(where)} (check --url): {terminal(e)}",
              file=sys.stderr)  # fmt: skip
        return 2
    return 0
