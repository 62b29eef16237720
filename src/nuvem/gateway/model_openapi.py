"""OpenAPI entries for the model protocols served outside FastAPI: the Open Inference Protocol
(KServe V2) under /v2 and TorchServe's /predictions and /ping (gateway/oip.py, torchserve.py)."""

from __future__ import annotations

from typing import Any

from nuvem.gateway.error_answers import error_response
from nuvem.gateway.oip_schemas import INFER_REQUEST, INFER_RESPONSE, MODEL_METADATA
from nuvem.gateway.openapi_parts import INVOKE_SECURITY

_OPEN = "open unless NUVEM_OPEN_HEALTH=0, then admin only"


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema or {}}}}


_REFUSALS = {
    "401": error_response("missing or wrong API key"),
    "403": error_response("the API key may not invoke the function behind this model"),
    "404": error_response("no such model or version, or not a protocol path"),
}
_CALL_FAILURES = {
    "400": error_response("the request is not what the model takes; the error says what it needs"),
    "413": error_response("body too large (NUVEM_MAX_BODY or the function's max_body)"),
    "429": error_response("the function's queue is full; see Retry-After"),
    "500": error_response("the model failed on this input"),
    "502": error_response("the replica died mid-call"),
    "503": error_response("the model has no ready replica and cannot start one"),
    "504": error_response("the function's timeout passed"),
}


def _parameters(*names: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in names
    ]


def _get(operation_id: str, summary: str, responses: dict[str, Any], *path: str) -> Any:
    return {
        "get": {
            "tags": ["models"],
            "operationId": operation_id,
            "summary": summary,
            "parameters": _parameters(*path),
            "responses": responses,
        }
    }


def _infer(operation_id: str, *path: str) -> dict[str, Any]:
    return {
        "post": {
            "tags": ["models"],
            "operationId": operation_id,
            "summary": "Run inference (V2 JSON, or the binary tensor extension)",
            "description": "A V2 inference request as JSON, or JSON followed by binary tensor "
            "data whose JSON length is given in Inference-Header-Content-Length.",
            "parameters": [
                *_parameters(*path),
                {
                    "name": "Inference-Header-Content-Length",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 0},
                },
            ],
            "security": INVOKE_SECURITY,
            "requestBody": {
                "required": True,
                "description": "a V2 inference request as JSON; or, with the binary tensor "
                "extension (application/octet-stream), that JSON in the first "
                "Inference-Header-Content-Length bytes and the inputs' bytes after it",
                "content": {
                    "application/json": {"schema": INFER_REQUEST},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            "responses": {
                "200": {
                    "description": "the inference response: JSON, or with binary outputs the "
                    "JSON (Inference-Header-Content-Length bytes) then their bytes",
                    "content": {
                        "application/json": {"schema": INFER_RESPONSE},
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        },
                    },
                },
                **_REFUSALS,
                **_CALL_FAILURES,
            },
        }
    }


def _predictions(operation_id: str, *path: str) -> dict[str, Any]:
    return {
        "post": {
            "tags": ["models"],
            "operationId": operation_id,
            "summary": "Classify an image, as TorchServe's inference API does",
            "parameters": _parameters(*path),
            "security": INVOKE_SECURITY,
            "requestBody": {
                "required": True,
                "content": {
                    "image/*": {"schema": {"type": "string", "format": "binary"}},
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"data": {"type": "string", "format": "binary"}},
                        }
                    },
                },
            },
            "responses": {
                "200": _json("the top classes with their probabilities"),
                **_REFUSALS,
                **_CALL_FAILURES,
            },
        }
    }


def model_paths() -> dict[str, Any]:
    ready = {
        "200": _json("ready"),
        "503": _json("not ready"),
        "401": error_response("admin credentials needed (" + _OPEN + ")"),
    }
    metadata = {
        "200": _json("the model's versions, inputs, outputs and platform", MODEL_METADATA),
        **_REFUSALS,
    }
    return {
        "/v2": _get("v2_server_metadata", "Server metadata and extensions", ready),
        "/v2/health/live": _get("v2_live", "Liveness (" + _OPEN + ")", ready),
        "/v2/health/ready": _get("v2_ready", "Every model has a ready replica", ready),
        "/v2/models/{name}": _get("v2_model_metadata", "Model metadata", metadata, "name"),
        "/v2/models/{name}/versions/{version}": _get(
            "v2_model_version_metadata", "Model metadata", metadata, "name", "version"
        ),
        "/v2/models/{name}/ready": _get(
            "v2_model_ready",
            "The model has a ready replica",
            {**ready, "404": _REFUSALS["404"]},
            "name",
        ),
        "/v2/models/{name}/versions/{version}/ready": _get(
            "v2_model_version_ready",
            "The model version has a ready replica",
            {**ready, "404": _REFUSALS["404"]},
            "name",
            "version",
        ),
        "/v2/models/{name}/infer": _infer("v2_infer", "name"),
        "/v2/models/{name}/versions/{version}/infer": _infer("v2_infer_version", "name", "version"),
        "/predictions/{model}": _predictions("torchserve_predict", "model"),
        "/predictions/{model}/{version}": _predictions(
            "torchserve_predict_version", "model", "version"
        ),
        "/ping": _get("torchserve_ping", "TorchServe health: Healthy or Unhealthy", ready),
    }
