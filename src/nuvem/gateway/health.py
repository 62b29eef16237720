"""GET /healthz, answered by the gateway from its first byte on (before the FastAPI part has
loaded: `nuvem up --detach` and load balancers wait on it). Admin-only unless open_health."""

from __future__ import annotations

from nuvem.errors import NuvemError
from nuvem.gateway.asgi import Scope, Send, respond, respond_error
from nuvem.gateway.services import Services

PATH = "/healthz"
_OK = b'{"status":"ok"}'


def check_health(platform: Services, authorization: str | None) -> dict[str, str]:
    if not platform.settings.open_health:
        platform.auth.check_admin(authorization)
    return {"status": "ok"}


async def answer_health(platform: Services, scope: Scope, send: Send) -> None:
    authorization: str | None = None
    for key, value in scope["headers"]:
        if key == b"authorization":
            authorization = value.decode("latin-1")
            break
    try:
        check_health(platform, authorization)
    except NuvemError as error:
        await respond_error(send, error)
        return
    await respond(send, 200, _OK, [(b"content-type", b"application/json")])
