"""OpenAPI links: which answer names the resource that later calls take. A client generator
can follow them, and schemathesis's stateful phase chains its calls along them (submit a job,
then read, cancel and delete that job; read a model's metadata, then infer on its versions)."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

_JOB = {"job_id": "$response.header.X-Call-Id"}
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
    "RollbackFunction": ("/system/function/{name}/rollback", "post"),
    "RemoveFunction": ("/system/function/{name}", "delete"),
}
_KEY_CALLS = {
    "LimitKey": ("/system/keys/{key_id}/limits", "put"),
    "RevokeKey": ("/system/keys/{key_id}", "delete"),
}
# A model's metadata names it (the path it was read at) and its versions.
_MODEL = {"name": "$request.path.name"}
_MODEL_CALLS = {
    "ModelReady": ("/v2/models/{name}/ready", "get"),
    "Infer": ("/v2/models/{name}/infer", "post"),
}
_MODEL_VERSION = {"name": "$request.path.name", "version": "$response.body#/versions/0"}
_MODEL_VERSION_CALLS = {
    "ModelVersion": ("/v2/models/{name}/versions/{version}", "get"),
    "ModelVersionReady": ("/v2/models/{name}/versions/{version}/ready", "get"),
    "InferVersion": ("/v2/models/{name}/versions/{version}/infer", "post"),
}
_PREDICT = {"model": "$request.path.name"}
_PREDICT_CALLS = {"Predict": ("/predictions/{model}", "post")}
_PREDICT_VERSION = {"model": "$request.path.name", "version": "$response.body#/versions/0"}
_PREDICT_VERSION_CALLS = {"PredictVersion": ("/predictions/{model}/{version}", "post")}
_FUNCTION = "$response.body#/name"
_LISTED = "$response.body#/0/name"
_METADATA = ("/v2/models/{name}", "get", "200")

_Calls = Mapping[str, tuple[str, str]]
# (path, method, status) of an answer -> (each parameter: where in the answer, the calls it feeds)
_LINKS: list[tuple[tuple[str, str, str], Mapping[str, str], _Calls]] = [
    (("/async-function/{name}", "post", "202"), _JOB, _JOB_CALLS),
    (("/async-function/{name}/{path}", "post", "202"), _JOB, _JOB_CALLS),
    (("/system/functions", "post", "202"), {"name": _FUNCTION}, _FUNCTION_CALLS),
    (("/system/functions", "put", "202"), {"name": _FUNCTION}, _FUNCTION_CALLS),
    (("/system/functions", "get", "200"), {"name": _LISTED}, _FUNCTION_CALLS),
    (("/system/keys", "post", "201"), {"key_id": "$response.body#/id"}, _KEY_CALLS),
    (("/system/keys", "get", "200"), {"key_id": "$response.body#/0/id"}, _KEY_CALLS),
    (_METADATA, _MODEL, _MODEL_CALLS),
    (_METADATA, _MODEL_VERSION, _MODEL_VERSION_CALLS),
    (_METADATA, _PREDICT, _PREDICT_CALLS),
    (_METADATA, _PREDICT_VERSION, _PREDICT_VERSION_CALLS),
]


def _operation_ref(path: str, method: str) -> str:
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


def add_links(schema: MutableMapping[str, Any]) -> None:
    """Put the links on the answers they start from; a link to an operation the document
    does not have is a mistake here, so it raises."""
    paths = schema["paths"]
    for (path, method, status), parameters, calls in _LINKS:
        operation = paths[path][method]
        # Copies: the hand-written entries share their responses between operations.
        responses = operation["responses"] = dict(operation["responses"])
        links = dict(responses[status].get("links", {}))
        for name, (target, target_method) in calls.items():
            if target_method not in paths[target]:
                raise KeyError(f"link {name}: {target_method} {target} is not in the document")
            links[name] = {
                "operationRef": _operation_ref(target, target_method),
                "parameters": dict(parameters),
            }
        responses[status] = {**responses[status], "links": links}
