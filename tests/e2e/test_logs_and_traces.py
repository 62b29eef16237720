"""End-to-end: the access log `nuvem up --access-log json` writes to stderr, and `nuvem logs`
over several functions, run as the user runs them."""

from __future__ import annotations

import json
import re
import signal
from typing import Any

import pytest

from support import Nuvem, block_until

pytestmark = pytest.mark.e2e

FUNCTIONS = """\
from nuvem import Response


def ok(req):
    print("ok was called", flush=True)
    return "fine"


def fail(req):
    raise ValueError("the input was not acceptable")


def alpha(req):
    print("alpha says " + req.text(), flush=True)
    return "a"


def beta(req):
    print("beta says " + req.text(), flush=True)
    return "b"
"""

STACK = """\
functions:
  ok: {handler: functions:ok}
  fail: {handler: functions:fail}
"""

TWO = """\
functions:
  alpha: {handler: functions:alpha}
  beta: {handler: functions:beta}
"""

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
FIELDS = {
    "time",
    "function",
    "version",
    "status",
    "duration_ms",
    "call_id",
    "trace_id",
    "key_id",
    "replica",
    "method",
    "path",
}


def access_lines(log: str) -> list[dict[str, Any]]:
    """The JSON access-log lines among what `nuvem up` printed."""
    found = []
    for line in log.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if "call_id" in entry:
                found.append(entry)
    return found


def test_the_json_access_log_has_one_line_per_call(nuvem: Nuvem) -> None:
    nuvem.write("functions.py", FUNCTIONS)
    nuvem.write("nuvem.yaml", STACK)
    nuvem.start("-f", "nuvem.yaml", "--access-log", "json")
    nuvem.wait_ready("ok", "fail")
    with nuvem.admin() as admin:
        created = admin.post("/system/keys", json={"name": "t", "functions": ["ok", "fail"]})
        assert created.status_code == 201, created.text
        key, key_id = created.json()["key"], created.json()["id"]
    traceparent = f"00-{TRACE}-00f067aa0ba902b7-01"
    with nuvem.client() as client:
        bearer = {"Authorization": f"Bearer {key}"}
        good = client.post("/function/ok/sub?x=1", headers={**bearer, "traceparent": traceparent})
        assert good.status_code == 200
        failed = client.post("/function/fail", headers=bearer)
        assert failed.status_code == 500
        refused = client.post("/function/ok")  # no credentials
        assert refused.status_code == 401
        forbidden = client.get("/function/nothing", headers=bearer)
        assert forbidden.status_code == 403
        missing = client.get("/function/nothing", auth=("admin", nuvem.admin_password()))
        assert missing.status_code == 404
        queued = client.post("/async-function/ok", headers=bearer)
        assert queued.status_code == 202
    calls = {r.headers["x-call-id"]: r for r in (good, failed, refused, forbidden, missing, queued)}
    entries: dict[str, dict[str, Any]] = {}

    def logged() -> bool:
        entries.update({e["call_id"]: e for e in access_lines(nuvem.log())})
        return calls.keys() <= entries.keys()

    block_until(logged, 30, lambda: f"an access line per call in:\n{nuvem.log()[-3000:]}")
    for call_id, response in calls.items():
        entry = entries[call_id]
        assert set(entry) == FIELDS, entry
        assert entry["status"] == response.status_code
        assert entry["duration_ms"] >= 0
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
        assert entry["trace_id"] == response.headers["traceparent"].split("-")[1]
    ok, fail, anonymous, other, unknown, job = (
        entries[r.headers["x-call-id"]] for r in calls.values()
    )
    assert ok["function"] == "ok"
    assert ok["trace_id"] == TRACE
    assert (ok["method"], ok["path"]) == ("POST", "/function/ok/sub")
    assert ok["key_id"] == key_id
    assert ok["replica"] in {r["id"] for r in nuvem.function("ok")["replicaList"]}
    assert fail["function"] == "fail"
    assert fail["replica"] in {r["id"] for r in nuvem.function("fail")["replicaList"]}
    assert anonymous["key_id"] is None
    assert anonymous["replica"] is None  # refused before any replica
    assert (other["function"], other["key_id"]) == ("nothing", key_id)
    assert (unknown["function"], unknown["method"], unknown["key_id"]) == (
        "nothing",
        "GET",
        "admin",
    )
    assert job["path"] == "/async-function/ok"
    assert job["replica"] is None
    assert key not in nuvem.log()  # the key's id is logged, never the key


def test_a_clean_stop_writes_every_access_line_still_queued(nuvem: Nuvem) -> None:
    # Batches an hour apart: every line this test sees was written by the stop.
    nuvem.env["NUVEM_ACCESS_LOG_FLUSH"] = "3600"
    nuvem.write("functions.py", FUNCTIONS)
    nuvem.write("nuvem.yaml", STACK)
    process = nuvem.start("-f", "nuvem.yaml", "--access-log", "json")
    nuvem.wait_ready("ok")
    with nuvem.admin() as admin:
        answers = [admin.post("/function/ok", content=str(n)) for n in range(200)]
    assert all(a.status_code == 200 for a in answers)
    assert access_lines(nuvem.log()) == []  # queued, not yet written
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0, nuvem.log()[-3000:]
    logged = [entry["call_id"] for entry in access_lines(nuvem.log())]
    assert logged == [a.headers["x-call-id"] for a in answers]  # all of them, in order
    assert "dropped" not in nuvem.log()


def test_logs_follows_several_functions_at_once(nuvem: Nuvem) -> None:
    nuvem.write("functions.py", FUNCTIONS)
    nuvem.write("nuvem.yaml", TWO)
    nuvem.up("-f", "nuvem.yaml")
    nuvem.wait_ready("alpha", "beta")
    following = nuvem.follow("logs", "-f", "alpha", "beta", "--tail", "0")
    with following as lines, nuvem.admin() as admin:

        def both_seen() -> bool:
            # Called until the follower shows both: it may subscribe after a call.
            assert admin.post("/function/alpha", content=b"hi").status_code == 200
            assert admin.post("/function/beta", content=b"ho").status_code == 200
            text = "".join(lines)
            return "alpha says hi" in text and "beta says ho" in text

        block_until(both_seen, 30, lambda: f"lines of both functions in {lines}")
    alpha = next(line for line in lines if "alpha says hi" in line)
    beta = next(line for line in lines if "beta says ho" in line)
    assert re.match(r"alpha \| \d\d:\d\d:\d\d\.\d{3} \S+ alpha says hi$", alpha), alpha
    assert re.match(r"beta  \| \d\d:\d\d:\d\d\.\d{3} \S+ beta says ho$", beta), beta

    # Without -f: the recent lines of both, merged in time order, then the command ends.
    recent = nuvem.run("logs", "alpha", "beta", "--tail", "50").stdout.splitlines()
    assert any(line.startswith("alpha | ") and "alpha says hi" in line for line in recent)
    assert any(line.startswith("beta  | ") and "beta says ho" in line for line in recent)
    unknown = nuvem.run("logs", "alpha", "nothing", check=False)
    assert unknown.returncode != 0
    assert "nothing" in unknown.stderr
