"""The baseline for bench/launch.py's model stack: a FastAPI app that serves ResNet-18 itself.

It does what a hand-written model server does at start: import torch, build the model,
load the weights file named by BENCH_WEIGHTS, run one warm-up forward, then classify the
JPEG each POST /predictions carries (top 5, as TorchServe answers). bench/launch.py serves
it with `uvicorn --app-dir bench direct_model_app:app --workers 1`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from nuvem.models import architectures, preprocess
from nuvem.models.weights import load_weights

ARCH = "resnet18"
state: dict[str, torch.nn.Module] = {}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    model = load_weights(architectures.build(ARCH), os.environ["BENCH_WEIGHTS"]).eval()
    with torch.inference_mode():
        model(torch.zeros(1, 3, 224, 224))
    state["model"] = model
    yield


app = FastAPI(title="direct model", openapi_url=None, lifespan=lifespan)


@app.post("/predictions")
async def predictions(request: Request) -> JSONResponse:
    pixels = preprocess.preprocess(await request.body())
    with torch.inference_mode():
        logits = state["model"](pixels.unsqueeze(0))
    top = preprocess.postprocess(logits[0])
    return JSONResponse({p.label: p.probability for p in top})
