"""The model-serving protocols in front of functions with `model:`: the Open Inference
Protocol under /v2 and TorchServe's /predictions, each a raw-ASGI endpoint."""

from __future__ import annotations

from nuvem.gateway import oip as oip
from nuvem.gateway import torchserve as torchserve
from nuvem.gateway.access_log import AccessLog
from nuvem.gateway.asgi import Receive, Scope, Send
from nuvem.gateway.services import Services


class ModelProtocols:
    def __init__(self, platform: Services, access: AccessLog | None = None) -> None:
        self.oip = oip.OipEndpoint(platform, access)
        self.torchserve = torchserve.TorchServeEndpoint(
            platform.controller, platform.auth, platform.metrics, access
        )

    @staticmethod
    def handles(path: str) -> bool:
        return oip.handles(path) or torchserve.handles(path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if oip.handles(scope["path"]):
            await self.oip(scope, receive, send)
        else:
            await self.torchserve(scope, receive, send)
