"""/openapi.json describes the model protocols, and the gateway answers within what it says."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from support import Running

pytestmark = pytest.mark.anyio

MODEL_PATHS = (
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/{name}",
    "/v2/models/{name}/versions/{version}",
    "/v2/models/{name}/ready",
    "/v2/models/{name}/versions/{version}/ready",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}/infer",
    "/predictions/{model}",
    "/predictions/{model}/{version}",
    "/ping",
)


async def test_every_model_route_is_described_and_answers_as_described(gateway: Running) -> None:
    schema = (await gateway.admin.get("/openapi.json")).json()
    assert set(MODEL_PATHS) <= set(schema["paths"])
    assert schema["components"]["schemas"]["Error"]["required"] == ["error"]
    operation_ids = [op["operationId"] for item in schema["paths"].values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))  # unique, as OpenAPI requires
    async with gateway.client() as anonymous:
        for template in MODEL_PATHS:
            await answers_as_described(schema, template, (anonymous, gateway.admin))


async def answers_as_described(
    schema: dict[str, Any], template: str, clients: tuple[httpx.AsyncClient, ...]
) -> None:
    path = template.format(name="nosuch", version="1", model="nosuch")
    for method, operation in schema["paths"][template].items():
        for client in clients:
            answer = await client.request(method.upper(), path, content=b"{}")
            assert str(answer.status_code) in operation["responses"], (
                f"{method.upper()} {path} answered {answer.status_code}, "
                f"not one of {sorted(operation['responses'])}"
            )
            if answer.status_code >= 400:
                assert "error" in answer.json()
