"""A PostgreSQL restart does not fail calls: keys the gateway has seen keep working while
the records database does not answer, and others get a JSON 503 instead of a 500."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from nuvem.gateway.auth import KEY_CACHE_SECONDS
from servers import fresh_database, postgres_server
from support import serving

pytestmark = pytest.mark.anyio


async def test_known_keys_outlive_a_records_outage(
    tmp_path: Path, handlers_dir: Path, clean_redis: str
) -> None:
    with contextlib.ExitStack() as database:
        url = fresh_database(database.enter_context(postgres_server()))
        async with serving(
            handlers_dir, tmp_path / "state", queue_url=clean_redis, records_url=url
        ) as gateway:
            await gateway.deploy("functions: {echo: {handler: 'handlers:echo'}}", started=True)
            seen, unseen = await gateway.api_key("echo"), await gateway.api_key("echo")
            async with gateway.client({"authorization": f"Bearer {seen}"}) as client:
                assert (await client.post("/function/echo", content=b"1")).status_code == 200
                database.close()  # PostgreSQL stops
                # Past the key cache: the gateway asks the database again, which is gone.
                gateway.platform.auth.clock = lambda: time.monotonic() + 2 * KEY_CACHE_SECONDS
                answer = await client.post("/function/echo", content=b"2")
                assert answer.status_code == 200, answer.text
                assert answer.content == b"2"
            async with gateway.client({"authorization": f"Bearer {unseen}"}) as client:
                answer = await client.post("/function/echo", content=b"3")
            assert answer.status_code == 503, answer.text
            assert "NUVEM_RECORDS_URL" in answer.json()["error"]
            assert int(answer.headers["retry-after"]) >= 1
