"""The dashboard over HTTP against a real gateway: sign-in, cookie, CSRF, feed, pages."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nuvem.gateway.ui import routes
from support import ADMIN_PASSWORD, Running, wait_until

pytestmark = pytest.mark.anyio

STACK = """
functions:
  echo: {handler: 'handlers:echo'}
  fail: {handler: 'handlers:fail'}
"""


@pytest.fixture
async def browser(gateway: Running) -> AsyncIterator[httpx.AsyncClient]:
    """A client that signed in with the password, as the sign-in form does."""
    await gateway.deploy(STACK, started=True)
    async with gateway.client() as client:
        response = await client.post("/ui/login", data={"password": ADMIN_PASSWORD})
        assert response.status_code == 303, response.text
        yield client


async def csrf_token(client: httpx.AsyncClient) -> str:
    page = await client.get("/ui")
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


async def test_anonymous_pages_go_to_sign_in_and_the_api_answers_401(gateway: Running) -> None:
    async with gateway.client() as client:
        for path in ("/ui", "/ui/events", "/ui/functions/echo"):
            response = await client.get(path)
            assert response.status_code == 303
            assert response.headers["location"] == f"/ui/login?next={path}"
        for path in ("/ui/stream", "/ui/api/history/echo", "/system/functions"):
            response = await client.get(path)
            assert response.status_code == 401
            assert "admin credentials" in response.json()["error"]
        login = await client.get("/ui/login")
        assert login.status_code == 200
        assert "frame-ancestors 'none'" in login.headers["content-security-policy"]
        assert (await client.get("/ui/static/app.js")).status_code == 200  # code, no secrets


async def test_sign_in_sets_a_strict_http_only_cookie(gateway: Running) -> None:
    async with gateway.client() as client:
        wrong = await client.post("/ui/login", data={"password": "nope"})
        assert wrong.status_code == 401
        assert "not the admin password" in wrong.text
        assert "set-cookie" not in wrong.headers
        as_json = await client.post(
            "/ui/login", json={"password": "nope"}, headers={"Accept": "application/json"}
        )
        assert as_json.status_code == 401
        assert "password is wrong" in as_json.json()["error"]
        right = await client.post(
            "/ui/login", data={"password": ADMIN_PASSWORD, "next": "/ui/keys"}
        )
        assert right.status_code == 303
        assert right.headers["location"] == "/ui/keys"
        cookie = right.headers["set-cookie"]
        assert cookie.startswith("nuvem_session=")
        for flag in ("HttpOnly", "SameSite=Strict", "Path=/"):
            assert flag in cookie
        assert (await client.get("/system/functions")).status_code == 200


async def test_sign_in_sends_nowhere_else_and_refuses_other_origins(gateway: Running) -> None:
    async with gateway.client() as client:
        for target in ("https://evil.example/ui", "//evil.example/ui", "/system/keys"):
            response = await client.post(
                "/ui/login", data={"password": ADMIN_PASSWORD, "next": target}
            )
            assert response.headers["location"] == "/ui", target
        cross = await client.post(
            "/ui/login",
            data={"password": ADMIN_PASSWORD},
            headers={"Origin": "http://evil.example"},
        )
        assert cross.status_code == 403
        assert "another origin" in cross.json()["error"]


async def test_unsafe_calls_with_the_cookie_need_the_csrf_token(
    gateway: Running, browser: httpx.AsyncClient
) -> None:
    refused = await browser.post("/system/keys", json={"name": "k"})
    assert refused.status_code == 403
    assert "X-CSRF-Token" in refused.json()["error"]
    wrong = await browser.post("/system/keys", json={"name": "k"}, headers={"X-CSRF-Token": "x"})
    assert wrong.status_code == 403
    token = await csrf_token(browser)
    created = await browser.post(
        "/system/keys",
        json={"name": "k", "functions": ["echo"], "rate": 5},
        headers={"X-CSRF-Token": token},
    )
    assert created.status_code == 201, created.text
    key_id = created.json()["id"]
    revoke = await browser.delete(f"/system/keys/{key_id}", headers={"X-CSRF-Token": token})
    assert revoke.status_code == 204
    scaled = await browser.post(
        "/system/scale-function/echo", json={"replicas": 2}, headers={"X-CSRF-Token": token}
    )
    assert scaled.status_code == 202, scaled.text


async def test_sign_out_ends_the_session(gateway: Running, browser: httpx.AsyncClient) -> None:
    token = await csrf_token(browser)
    assert (await browser.post("/ui/logout")).status_code == 403  # CSRF-checked too
    out = await browser.post("/ui/logout", headers={"X-CSRF-Token": token})
    assert out.status_code == 200
    assert "Max-Age=0" in out.headers["set-cookie"]
    # The browser would drop it; a stolen copy of the cookie is dead too.
    browser.cookies.set("nuvem_session", "gone.bad")
    stale = await browser.get("/system/functions")
    assert stale.status_code == 401
    assert "sign in again" in stale.json()["error"]
    assert (await browser.get("/ui")).status_code == 303


async def test_basic_auth_opens_a_session_for_the_page(gateway: Running) -> None:
    page = await gateway.admin.get("/ui/nodes")
    assert page.status_code == 200
    assert "nuvem_session=" in page.headers["set-cookie"]
    assert (await gateway.admin.get("/ui/nowhere")).status_code == 404


async def test_the_feed_moves_when_a_function_is_called(
    gateway: Running, browser: httpx.AsyncClient
) -> None:
    async with browser.stream("GET", "/ui/stream") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.aiter_lines()

        async def echo_in_next_snapshot() -> dict[str, Any] | None:
            async for line in lines:
                if line.startswith("data: "):
                    snapshot = json.loads(line.removeprefix("data: "))
                    found = [f for f in snapshot.get("functions", ()) if f["name"] == "echo"]
                    return found[0] if found else None
            raise AssertionError("the stream ended")

        # The first snapshot may predate the deploy by a step.
        before = await wait_until(echo_in_next_snapshot, what="echo in the feed")
        for _ in range(3):
            assert (await gateway.invoke("echo", b"hi")).status_code == 200

        async def counted() -> dict[str, Any] | None:
            echo = await echo_in_next_snapshot()
            return echo if echo is not None and echo["calls"] >= before["calls"] + 3 else None

        echo = await wait_until(counted, within=10.0, what="the feed to count the calls")
        assert echo["rps"] > 0
        assert echo["p50"] is not None
        assert echo["ready"] == 1
    history = await browser.get("/ui/api/history/echo")
    assert history.status_code == 200
    assert len(history.json()["columns"]["time"]) >= 1
    missing = await browser.get("/ui/api/history/nope")
    assert missing.status_code == 404


async def test_a_failed_job_is_submitted_again(
    gateway: Running, browser: httpx.AsyncClient
) -> None:
    submitted = await gateway.admin.post("/async-function/fail", content=b"x")
    job_id = submitted.headers["x-call-id"]

    async def failed() -> bool:
        job = await browser.get(f"/system/jobs/{job_id}")
        return bool(job.json()["state"] == "failed")

    await wait_until(failed, within=20.0, what="the job to fail")
    token = await csrf_token(browser)
    retried = await browser.post(f"/system/jobs/{job_id}/retry", headers={"X-CSRF-Token": token})
    assert retried.status_code == 202, retried.text
    assert retried.json()["id"] != job_id
    again = await browser.post(
        f"/system/jobs/{retried.json()['id']}/retry", headers={"X-CSRF-Token": token}
    )
    assert again.status_code in (202, 409)  # 409 while the new job is still queued or running
    async with gateway.client() as client:
        anonymous = await client.post(f"/system/jobs/{job_id}/retry")
    assert anonymous.status_code == 401


async def test_every_asset_comes_from_the_package(
    gateway: Running, browser: httpx.AsyncClient
) -> None:
    page = (await browser.get("/ui")).text
    login = (await browser.get("/ui/login")).text
    assets = re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', page + login)
    assert len(set(assets)) == 4, assets  # uPlot's script and style, ours
    for path in set(assets):
        response = await browser.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].split(";")[0] in (
            "text/css",
            "text/javascript",
            "application/javascript",
        ), path


def test_no_file_refers_to_another_site() -> None:
    """Nothing is fetched from elsewhere at run time (uPlot names its home page, no more)."""
    static = Path(routes.STATIC)
    for file in [*static.glob("*.*"), *static.glob("vendor/*.css")]:
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", file.read_text()), file


async def test_guessing_the_password_is_slowed_down(gateway: Running) -> None:
    async with gateway.client() as client:
        for _ in range(routes.SIGN_IN_BURST):
            wrong = await client.post("/ui/login", data={"password": "guess"})
            assert wrong.status_code == 401
        slowed = await client.post("/ui/login", data={"password": ADMIN_PASSWORD})
        assert slowed.status_code == 429
        assert "Too many attempts" in slowed.text
        assert int(slowed.headers["retry-after"]) >= 1
        as_json = await client.post(
            "/ui/login", json={"password": "guess"}, headers={"Accept": "application/json"}
        )
        assert as_json.status_code == 429
        assert "too many sign-in attempts" in as_json.json()["error"]
        # The API's basic auth is not held up by it.
        assert (await gateway.admin.get("/system/functions")).status_code == 200
