"""The FastAPI application: `create_app(registry, settings)`.

Guards that must act before a request's body is read sit in one ASGI middleware, `Guard`:
the upload limit (Content-Length first, then the bytes as they stream in) and admission to the
inference queue (503 + Retry-After when full). Every error leaves as JSON `{"detail": "<one line>"}`;
an unexpected exception is logged as one line and answered 500, never with a traceback.
"""
from __future__ import annotations

import json
import logging
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from .registry import InferenceQueue, ModelRegistry
from .routes import STATIC, health, models, page

log = logging.getLogger("nextpatch.serve")

PREDICT_PATH = re.compile(r"^/v1/models/[^/]+/(predict|feedback)/?$")  # what runs on the inference queue
DRAIN_LIMIT = 64 << 20  # read and drop at most this much of a refused body, so that the client sees the answer


@dataclass
class Settings:
    """What `nextpatch serve`'s options set: the upload limit, the key, and the inference queue."""

    max_upload_bytes: int = 20 << 20
    api_key: str | None = None
    backend: str = "torch"
    workers: int = 1  # inferences at once (each in a worker thread)
    queue_size: int = 32  # admitted requests waiting beyond those; more are answered 503


class UploadTooLarge(StarletteHTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"upload over the limit of {limit / (1 << 20):g} MB "
                              "(send a smaller image or start the server with a larger --max-upload-mb)")


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= 300 else text[:297] + "..."


class Guard:
    """Pure ASGI middleware: upload limit, queue admission, and the last word on unexpected errors."""

    def __init__(self, app, *, settings: Settings, queue: InferenceQueue):
        self.app, self.settings, self.queue = app, settings, queue

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.settings.max_upload_bytes
        state = {"read": 0, "done": False, "started": False}

        async def counted_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["read"] += len(message.get("body", b""))
                state["done"] = not message.get("more_body", False)
                if state["read"] > limit:
                    await drain()
                    raise UploadTooLarge(limit)
            elif message["type"] == "http.disconnect":
                state["done"] = True
            return message

        async def drain():
            while not state["done"] and state["read"] <= DRAIN_LIMIT:
                message = await receive()
                state["read"] += len(message.get("body", b""))
                state["done"] = message["type"] != "http.request" or not message.get("more_body", False)

        async def tracked_send(message):
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin-1").strip()
        if declared.isdigit() and int(declared) > limit:
            if int(declared) <= DRAIN_LIMIT:
                await drain()
            return await _send_json(send, 413, UploadTooLarge(limit).detail)

        admitted = False
        if scope.get("method") == "POST" and PREDICT_PATH.match(scope.get("path", "")):
            if not self.queue.try_acquire():
                await drain()
                return await _send_json(send, 503, f"busy: {self.queue.capacity} requests already admitted "
                                                   f"(queue full); retry after {self.queue.retry_after()} s",
                                        {"Retry-After": str(self.queue.retry_after())})
            admitted = True
        try:
            await self.app(scope, counted_receive, tracked_send)
        except Exception as exc:  # anything the routes did not turn into an answer
            log.error("%s %s: internal error: %s: %s", scope.get("method"), scope.get("path"),
                      type(exc).__name__, _one_line(exc))
            if not state["started"]:
                await _send_json(send, 500, f"internal error ({type(exc).__name__}: {_one_line(exc)}); "
                                            "the server log has the same line")
        finally:
            if admitted:
                self.queue.release()


async def _send_json(send, status: int, detail: str, headers: dict | None = None) -> None:
    body = json.dumps({"detail": _one_line(detail)}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path")]
        if loc == ["file"] and err.get("type") == "missing":
            return "no image: send it as the multipart form field 'file' (curl -F file=@part.png URL)"
        parts.append(f"{'.'.join(loc) or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def create_app(registry: ModelRegistry, settings: Settings | None = None) -> FastAPI:
    """The app serving `registry`'s models (loaded already), with its own bounded inference queue.

    `/docs` is the service's own page over `/openapi.json` (static/docs.html): no CDN, so it works offline.
    """
    settings = settings or Settings()
    queue = InferenceQueue(settings.workers, settings.queue_size)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        queue.shutdown()

    app = FastAPI(title="nextpatch", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  description="Anomaly detection on images: POST an image to a model, get its score and "
                              "whether it fails (score > 1.0). The web page is at `/`.")
    app.state.registry, app.state.settings, app.state.queue = registry, settings, queue
    app.include_router(health)
    app.include_router(models)
    app.include_router(page)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": _one_line(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _one_line(_validation_detail(exc))}, status_code=422)

    app.add_middleware(Guard, settings=settings, queue=queue)
    return app
