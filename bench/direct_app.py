"""The baseline for bench/echo.py: a FastAPI app that echoes the request body itself.

It answers like the example `echo` function (examples/functions.py): the body as it came,
with the request's content type. bench/echo.py serves it with
`uvicorn --app-dir bench direct_app:app --workers 2 --http httptools --loop uvloop`.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response

app = FastAPI(title="direct echo", openapi_url=None, docs_url=None, redoc_url=None)


@app.post("/echo")
async def echo(request: Request) -> Response:
    body = await request.body()
    content_type = request.headers.get("content-type", "application/octet-stream")
    return Response(body, media_type=content_type)
