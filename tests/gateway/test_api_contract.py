"""The findings of schemathesis against the gateway (issue 17 §1), one regression test each:
the document lists the statuses the gateway answers, the methods each path takes, the hot
paths' real headers and the credentials; the gateway answers OPTIONS and unknown methods as
the document says. tests/e2e/test_api_contract.py runs schemathesis itself."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no types; in the dev extra via schemathesis
import pytest

from nuvem import HTTPError, Request
from nuvem.errors import BadRequest
from nuvem.gateway.methods import MethodTable, allow_header
from nuvem.gateway.oip_codec import decode_request
from support import Running

pytestmark = pytest.mark.anyio

VERBS = ("get", "head", "post", "put", "patch", "delete", "options")


async def document(gateway: Running) -> dict[str, Any]:
    answer = await gateway.admin.get("/openapi.json")
    assert answer.status_code == 200
    found: dict[str, Any] = answer.json()
    return found


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (template, method, operation)
        for template, item in schema["paths"].items()
        for method, operation in item.items()
        if method in VERBS
    ]


async def test_validation_errors_are_documented_as_the_400_they_answer(gateway: Running) -> None:
    schema = await document(gateway)
    for template, method, operation in operations(schema):
        assert "422" not in operation["responses"], f"{method} {template} still lists 422"
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    scale = schema["paths"]["/system/scale-function/{name}"]["post"]["responses"]
    assert scale["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    answer = await gateway.admin.post("/system/scale-function/nosuch", json={"replicas": "x"})
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("invalid request: replicas:")


async def test_every_operation_names_its_credentials_and_refusals(gateway: Running) -> None:
    schema = await document(gateway)
    schemes = set(schema["components"]["securitySchemes"])
    assert schemes == {"admin", "bearer", "apiKey"}
    for template, method, operation in operations(schema):
        where = f"{method} {template}"
        for status in ("414", "429", "431"):  # the Guard's, before any route
            assert status in operation["responses"], f"{where} lacks {status}"
        if "requestBody" in operation:
            assert {"408", "413"} <= set(operation["responses"]), where
        security = operation.get("security") or []
        if security and template not in ("/healthz", "/metrics"):  # records behind the keys
            assert "503" in operation["responses"], where
        if template.startswith("/system/"):
            assert {"admin": []} in security, where
            assert {"400", "401", "404", "409"} <= set(operation["responses"]), where
        for requirement in security:
            assert set(requirement) <= schemes, where
    assert schema["paths"]["/healthz"]["get"]["security"] == [{}, {"admin": []}]
    jobs = schema["paths"]["/system/jobs/{job_id}"]["get"]["security"]
    assert {"apiKey": []} in jobs  # a key reads its own functions' jobs


async def test_the_hot_paths_document_the_headers_the_gateway_reads(gateway: Running) -> None:
    schema = await document(gateway)
    sync = schema["paths"]["/function/{name}"]
    assert set(sync) == set(VERBS)  # what the gateway forwards; other methods answer 405
    headers = {p["name"] for p in sync["post"]["parameters"] if p["in"] == "header"}
    assert headers == {"X-Call-Id", "traceparent", "tracestate"}
    assert set(sync["post"]["responses"]["200"]["headers"]) == {
        "X-Call-Id",
        "traceparent",
        "X-Start-Time",
        "X-Duration-Seconds",
    }
    submit = schema["paths"]["/async-function/{name}"]
    assert set(submit) == {"post", "put", "patch", "delete"}  # the method reaches the handler
    headers = {p["name"] for p in submit["post"]["parameters"] if p["in"] == "header"}
    assert headers == {"X-Callback-Url", "Idempotency-Key", "traceparent", "tracestate"}
    assert "Location" in submit["post"]["responses"]["202"]["headers"]


async def test_options_answers_the_documented_methods_in_allow(gateway: Running) -> None:
    schema = await document(gateway)
    table = MethodTable(schema["paths"])
    for path in ("/system/function/nosuch", "/system/jobs/nosuch", "/v2", "/ping", "/healthz"):
        answer = await gateway.admin.options(path)
        assert answer.status_code == 204, path
        allow = answer.headers["allow"]
        assert tuple(allow.split(", ")) == table.allowed(path), path
    both = await gateway.admin.options("/system/function/nosuch")
    assert both.headers["allow"] == "GET, HEAD, DELETE, OPTIONS"  # two routes, one path


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("TRACE", "/v2", "GET, HEAD, OPTIONS"),
        ("TRACE", "/ping", "GET, HEAD, OPTIONS"),
        ("PUT", "/predictions/nosuch", "POST, OPTIONS"),
        ("PATCH", "/system/function/nosuch", "GET, HEAD, DELETE, OPTIONS"),
        ("TRACE", "/function/echo", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        ("GET", "/async-function/echo", "POST, PUT, PATCH, DELETE, OPTIONS"),
        ("TRACE", "/async-function/echo/deeper/path", "POST, PUT, PATCH, DELETE, OPTIONS"),
    ],
)
async def test_a_method_the_path_does_not_take_answers_405_with_allow(
    gateway: Running, method: str, path: str, allow: str
) -> None:
    answer = await gateway.admin.request(method, path)
    assert answer.status_code == 405
    assert answer.headers["allow"] == allow
    assert method in answer.json()["error"]


async def test_a_function_answers_options_itself(gateway: Running) -> None:
    await gateway.deploy("functions: {echo: {handler: 'handlers:echo'}}")
    answer = await gateway.admin.request("OPTIONS", "/function/echo", content=b"preflight")
    assert answer.status_code == 200  # the handler's answer, e.g. its own CORS headers
    assert answer.content == b"preflight"


async def test_an_undescribed_path_keeps_its_own_answer(gateway: Running) -> None:
    async with gateway.client() as anonymous:
        assert (await anonymous.options("/nothing/here")).status_code == 404


def test_allow_adds_head_to_get_and_options_to_all() -> None:
    assert allow_header(["get"]) == ("GET", "HEAD", "OPTIONS")
    assert allow_header(["delete", "post"]) == ("POST", "DELETE", "OPTIONS")
    table = MethodTable({"/a/{x}": {"get": {}}, "/a/{x}/b": {"post": {}}, "/a/c": {"put": {}}})
    assert table.allowed("/a/1") == ("GET", "HEAD", "OPTIONS")
    assert table.allowed("/a/1/b") == ("POST", "OPTIONS")
    assert table.allowed("/a/c") == ("PUT", "OPTIONS")  # an exact path before a template
    assert table.allowed("/a/1/b/2") is None


async def test_a_scale_outside_the_bounds_is_a_conflict(gateway: Running) -> None:
    await gateway.deploy("functions: {echo: {handler: 'handlers:echo', scaling: {max: 2}}}")
    answer = await gateway.admin.post("/system/scale-function/echo", json={"replicas": 0})
    assert answer.status_code == 409  # a valid request; the function's bounds refuse it
    assert "min 1, max 2" in answer.json()["error"]


async def test_json_booleans_are_no_rate_limits(gateway: Running) -> None:
    for body in ({"rate": True}, {"burst": False}):
        answer = await gateway.admin.post("/system/keys", json=body)
        assert answer.status_code == 400, body
        assert "is not a number" in answer.json()["error"]
    whole = await gateway.admin.post("/system/keys", json={"rate": 5, "burst": 119.0})
    assert whole.status_code == 201  # JSON's 119.0 is an integer, as JSON Schema says


async def test_the_job_states_are_an_enum_in_the_document(gateway: Running) -> None:
    schema = await document(gateway)
    state = next(
        p for p in schema["paths"]["/system/jobs"]["get"]["parameters"] if p["name"] == "state"
    )
    text = str(state["schema"])
    assert "JobState" in text or "enum" in text


async def test_empty_answers_are_documented_without_a_body(gateway: Running) -> None:
    schema = await document(gateway)
    for template, method, status in (
        ("/system/function/{name}", "delete", "202"),
        ("/system/functions", "delete", "202"),
        ("/system/keys/{key_id}", "delete", "204"),
    ):
        assert "content" not in schema["paths"][template][method]["responses"][status], template
    await gateway.deploy("functions: {echo: {handler: 'handlers:echo'}}")
    answer = await gateway.admin.delete("/system/function/echo")
    assert answer.status_code == 202
    assert answer.content == b""


async def test_the_bundle_digest_pattern_is_documented(gateway: Running) -> None:
    schema = await document(gateway)
    digest = schema["paths"]["/system/bundles/{digest}"]["get"]["parameters"][0]
    assert digest["schema"]["pattern"] == "^[0-9a-f]{64}$"


async def test_an_anonymous_client_meets_the_documented_refusals(gateway: Running) -> None:
    schema = await document(gateway)
    async with gateway.client() as anonymous:
        for template in ("/system/functions", "/system/keys", "/system/jobs"):
            answer = await anonymous.get(template)
            assert str(answer.status_code) in schema["paths"][template]["get"]["responses"]
            assert answer.status_code == 401


@pytest.fixture
def examples_functions() -> ModuleType:
    source = Path(__file__).resolve().parents[2] / "examples" / "functions.py"
    spec = importlib.util.spec_from_file_location("example_functions", source)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_wordcount_refuses_what_is_not_an_object_with_400(
    examples_functions: ModuleType,
) -> None:
    counter = examples_functions.WordCount()
    counter.setup()
    for body in (b'""', b"[1]", b'{"text": 3}'):
        with pytest.raises(HTTPError) as refused:
            counter(Request(body=body))
        assert refused.value.status == 400
    counted = counter(Request(body=b'{"text": "a b"}'))
    assert counted["words"] == 2


async def test_links_lead_from_a_submit_to_its_job(gateway: Running) -> None:
    schema = await document(gateway)
    links = schema["paths"]["/async-function/{name}"]["post"]["responses"]["202"]["links"]
    status = links["JobStatus"]
    assert status["operationRef"] == "#/paths/~1system~1jobs~1{job_id}/get"
    assert status["parameters"] == {"job_id": "$response.header.X-Call-Id"}
    created = schema["paths"]["/system/keys"]["post"]["responses"]["201"]["links"]
    assert created["RevokeKey"]["parameters"] == {"key_id": "$response.body#/id"}
    # The link is true: the submit's X-Call-Id is the job GET /system/jobs/{job_id} reads.
    await gateway.deploy("functions: {echo: {handler: 'handlers:echo'}}")
    submitted = await gateway.admin.post("/async-function/echo", content=b"x")
    job = await gateway.admin.get(f"/system/jobs/{submitted.headers['x-call-id']}")
    assert job.status_code == 200
    # Links sit on copies: the other operations sharing those answers carry none.
    assert "links" not in schema["paths"]["/function/{name}"]["post"]["responses"]["200"]


async def test_a_models_metadata_links_to_its_calls(gateway: Running) -> None:
    schema = await document(gateway)
    links = schema["paths"]["/v2/models/{name}"]["get"]["responses"]["200"]["links"]
    assert links["Infer"]["operationRef"] == "#/paths/~1v2~1models~1{name}~1infer/post"
    assert links["Infer"]["parameters"] == {"name": "$request.path.name"}
    assert links["InferVersion"]["parameters"] == {
        "name": "$request.path.name",
        "version": "$response.body#/versions/0",
    }
    assert links["Predict"]["parameters"] == {"model": "$request.path.name"}
    listed = schema["paths"]["/system/functions"]["get"]["responses"]["200"]["links"]
    assert listed["RollbackFunction"]["parameters"] == {"name": "$response.body#/0/name"}


async def test_the_inference_request_schema_is_what_the_gateway_decodes(gateway: Running) -> None:
    schema = await document(gateway)
    body = schema["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]
    request_schema = body["content"]["application/json"]["schema"]
    example = request_schema["example"]
    jsonschema.validate(example, request_schema)
    decoded = decode_request(json.dumps(example).encode(), None)
    assert [(t.name, t.datatype, t.shape) for t in decoded.inputs] == [("x", "FP32", (1, 8))]
    # What the schema refuses, the gateway refuses too: 400 naming the problem.
    refusals: list[dict[str, Any]] = [
        {},
        {"inputs": [{"name": "x", "shape": [1], "datatype": "FP33", "data": [1]}]},
        {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]},
        {"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": []}]},
        {"inputs": [], "outputs": [{"parameters": {}}]},
    ]
    for refused in refusals:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(refused, request_schema)
        with pytest.raises(BadRequest):
            decode_request(json.dumps(refused).encode(), None)
