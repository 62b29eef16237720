"""OpenAPI links: which answer names the resource that later calls take. A client generator
can follow them, and schemathesis's stateful phase chains its calls along them (submit a job,
then read, cancel and delete that job)."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

_JOB = "$response.header.X-Call-Id"
_JOB_CALLS = {
    "JobStatus": ("/system/jobs/{job_id}", "get"),
    "JobResult": ("/system/jobs/{job_id}/result", "get"),
    "CancelJob": ("/system/jobs/{job_id}/cancel", "post"),
    "RetryJob": ("/system/jobs/{job_id}/retry", "post"),
    "DeleteJob": ("/system/jobs/{job_id}", "delete"),
}
_FUNCTION_CALLS = {
    "FunctionStatus": ("/system/function/{name}", "get"),
    "ScaleFunction": ("/system/scale-function/{name}", "post"),
    "InvokeFunction": ("/function/{name}", "post"),
    "SubmitJob": ("/async-function/{name}", "post"),
    "RemoveFunction": ("/system/function/{name}", "delete"),
}
_KEY_CALLS = {
    "LimitKey": ("/system/keys/{key_id}/limits", "put"),
    "RevokeKey": ("/system/keys/{key_id}", "delete"),
}

# (path, method, status) of an answer -> (parameter, where in the answer, the calls it feeds)
_LINKS: list[tuple[tuple[str, str, str], str, str, dict[str, tuple[str, str]]]] = [
    (("/async-function/{name}", "post", "202"), "job_id", _JOB, _JOB_CALLS),
    (("/async-function/{name}/{path}", "post", "202"), "job_id", _JOB, _JOB_CALLS),
    (("/system/functions", "post", "202"), "name", "$response.body#/name", _FUNCTION_CALLS),
    (("/system/functions", "put", "202"), "name", "$response.body#/name", _FUNCTION_CALLS),
    (("/system/functions", "get", "200"), "name", "$response.body#/0/name", _FUNCTION_CALLS),
    (("/system/keys", "post", "201"), "key_id", "$response.body#/id", _KEY_CALLS),
    (("/system/keys", "get", "200"), "key_id", "$response.body#/0/id", _KEY_CALLS),
]


def _operation_ref(path: str, method: str) -> str:
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


def add_links(schema: MutableMapping[str, Any]) -> None:
    """Put the links on the answers they start from; a link to an operation the document
    does not have is a mistake here, so it raises."""
    paths = schema["paths"]
    for (path, method, status), parameter, source, calls in _LINKS:
        links = {}
        for name, (target, target_method) in calls.items():
            if target_method not in paths[target]:
                raise KeyError(f"link {name}: {target_method} {target} is not in the document")
            links[name] = {
                "operationRef": _operation_ref(target, target_method),
                "parameters": {parameter: source},
            }
        operation = paths[path][method]
        # Copies: the hand-written entries share their responses between operations.
        responses = operation["responses"] = dict(operation["responses"])
        responses[status] = {**responses[status], "links": links}
