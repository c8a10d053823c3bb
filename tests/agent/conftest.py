"""Fixtures for agent tests: the collector's real speed-test endpoint under uvicorn."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from tests import realparts

try:
    from edugap.collector.serving.speedtest import SpeedtestApp, serve_in_thread, speedtest_app
except ImportError as e:  # the collector extra (starlette, uvicorn) is not installed
    SpeedtestApp = Any  # type: ignore[misc,assignment]
    _IMPORT_ERROR: ImportError | None = e
else:
    _IMPORT_ERROR = None

StartServer = Callable[..., tuple[str, "SpeedtestApp"]]


@pytest.fixture
def speedtest_server() -> Iterator[StartServer]:
    """`start(**speedtest_app_kwargs) -> (base_url, app)`: a real endpoint on a free port."""
    if _IMPORT_ERROR is not None:
        realparts.missing("speed-test server", f"pip install 'edugap[collector]': {_IMPORT_ERROR}")
    with ExitStack() as stack:

        def start(**kwargs: Any) -> tuple[str, SpeedtestApp]:
            app = speedtest_app(**kwargs)
            url = stack.enter_context(serve_in_thread(app))
            return url, app

        yield start
