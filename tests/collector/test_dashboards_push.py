"""`edugap dashboards push` against a stand-in for Grafana's HTTP API (no Grafana server can
be installed here; tests/collector/grafana_standin.py checks each request against Grafana's
documented API): folder created, dashboards created then unchanged then updated by uid, token
or user and password, clear errors for a wrong URL or wrong credentials."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from edugap.collector.cli import main
from edugap.collector.commands.dashboards import folder_uid
from tests import realparts
from tests.collector.grafana_standin import Grafana, grafana_standin

DASHBOARDS = Path(__file__).parents[2] / "dashboards"


@pytest.fixture
def grafana() -> Iterator[Grafana]:
    with grafana_standin() as g:
        yield g
    assert g.violations == []


def push(g: Grafana, *extra: str) -> int:
    return main(["dashboards", "push", "--url", g.url, *extra])


def committed() -> dict[str, dict[str, object]]:
    return {
        d["uid"]: d
        for d in (json.loads(p.read_text(encoding="utf-8")) for p in DASHBOARDS.glob("*.json"))
    }


def test_first_push_creates_the_folder_and_every_dashboard(
    grafana: Grafana, capsys: pytest.CaptureFixture[str]
) -> None:
    assert push(grafana, "--token", grafana.token) == 0
    out = capsys.readouterr().out
    assert "folder 'edugap' (uid edugap): created" in out
    assert "dashboard 'edugap: school coverage' (uid edugap-coverage): created, version 1" in out
    assert set(grafana.dashboards) == set(committed()) == {"edugap-coverage", "edugap-collector"}
    for uid, board in committed().items():
        stored = grafana.dashboards[uid]
        assert stored["meta"]["folderUid"] == "edugap"
        assert {k: v for k, v in stored["dashboard"].items() if k not in ("id", "version")} == board


def test_a_second_push_changes_nothing_and_a_changed_one_is_overwritten(
    grafana: Grafana, capsys: pytest.CaptureFixture[str]
) -> None:
    assert push(grafana, "--token", grafana.token) == 0
    capsys.readouterr()
    assert push(grafana, "--token", grafana.token) == 0
    out = capsys.readouterr().out
    assert "folder 'edugap' (uid edugap): exists" in out
    assert out.count(": unchanged (version 1)") == 2
    assert grafana.requests.count(("POST", "/api/dashboards/db")) == 2  # only the first push
    # someone edits the coverage dashboard in Grafana; the next push puts edugap's back
    grafana.dashboards["edugap-coverage"]["dashboard"]["title"] = "edited by hand"
    assert push(grafana, "--token", grafana.token) == 0
    out = capsys.readouterr().out
    assert (
        "dashboard 'edugap: school coverage' (uid edugap-coverage): updated, version 1 -> 2" in out
    )
    assert grafana.dashboards["edugap-coverage"]["dashboard"]["title"] == "edugap: school coverage"


def test_user_and_password_and_a_folder_of_its_own(
    grafana: Grafana, capsys: pytest.CaptureFixture[str]
) -> None:
    user, password = grafana.user
    assert push(grafana, "--user", user, "--password", password, "--folder", "Sở Giáo dục") == 0
    assert grafana.folders["so-giao-duc"]["title"] == "Sở Giáo dục"
    assert {d["meta"]["folderUid"] for d in grafana.dashboards.values()} == {"so-giao-duc"}


@pytest.mark.parametrize(
    "credentials", [["--token", "wrong"], ["--user", "admin", "--password", "no"]]
)
def test_wrong_credentials_are_named_and_nothing_is_saved(
    grafana: Grafana, credentials: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert push(grafana, *credentials) == 2
    err = capsys.readouterr().err
    assert "refused the credentials: check --token, or --user and --password" in err
    assert grafana.url in err and grafana.folders == {} and grafana.dashboards == {}


def test_a_url_where_nothing_listens_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{realparts.free_port()}"
    assert main(["dashboards", "push", "--url", url, "--token", "t"]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach Grafana at {url} (check --url)" in err


def test_a_url_that_is_not_grafana_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edugap.collector.serving.speedtest import serve_in_thread, speedtest_app

    with serve_in_thread(speedtest_app()) as url:  # answers HTTP, but not Grafana's API
        assert main(["dashboards", "push", "--url", url, "--token", "t"]) == 2
    err = capsys.readouterr().err
    assert f"Grafana at {url}" in err


def test_credentials_must_be_given_once(
    grafana: Grafana, capsys: pytest.CaptureFixture[str]
) -> None:
    assert push(grafana) == 2
    assert push(grafana, "--token", "t", "--user", "u", "--password", "p") == 2
    assert push(grafana, "--user", "u") == 2
    assert grafana.requests == []


@pytest.mark.parametrize(
    ("title", "uid"),
    [("edugap", "edugap"), ("Sở GD&ĐT Cao Bằng", "so-gd-dt-cao-bang"), ("!!!", "edugap")],
)
def test_folder_uids_are_what_grafana_accepts(title: str, uid: str) -> None:
    assert folder_uid(title) == uid
