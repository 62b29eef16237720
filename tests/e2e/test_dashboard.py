"""`nuvem up` and the dashboard: the banner names it, and an open tab does not hold the
gateway up when it is told to stop."""

from __future__ import annotations

import signal
import time

import pytest

from support import ADMIN_PASSWORD, Nuvem, block_until

pytestmark = pytest.mark.e2e


def test_the_banner_names_the_dashboard_and_an_open_tab_does_not_hold_the_stop(
    nuvem: Nuvem,
) -> None:
    process = nuvem.start()
    block_until(nuvem.healthy, 60, lambda: f"nuvem up healthy:\n{nuvem.log()}")
    assert f"dashboard: {nuvem.url}/ui" in nuvem.log()
    with (
        nuvem.client(auth=("admin", ADMIN_PASSWORD)) as client,
        client.stream("GET", "/ui/stream") as stream,
    ):
        lines = stream.iter_lines()
        assert next(lines) == "retry: 2000"
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0, nuvem.log()
        stopped = time.monotonic() - started
        assert list(lines)[-1:] in ([], [""])  # the stream ended with the gateway
    # uvicorn would wait its 30 s graceful timeout for a stream that never ends.
    assert stopped < 15, nuvem.log()
