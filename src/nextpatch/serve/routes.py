"""The endpoints: health, the model list, predict, and the web page."""
from __future__ import annotations

import base64
import io
import secrets
import tempfile
import time
from importlib import resources
from pathlib import Path, PurePath

import numpy as np
from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, Security, UploadFile
from fastapi.responses import FileResponse
from fastapi.security import APIKeyHeader

from .. import __version__
from ..errors import ImageError, NextpatchError
from .registry import InferenceQueue, ModelRegistry, ServedModel
from .schemas import ErrorOut, FeedbackOut, HealthOut, ModelList, PredictionOut, StatsOut

STATIC = resources.files("nextpatch.serve") / "static"
API_KEY_HEADER = "X-API-Key"


# ----------------------------------------------------------------------------------- dependencies
def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def get_queue(request: Request) -> InferenceQueue:
    return request.app.state.queue


_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                           description="needed when the server was started with --api-key")


def require_api_key(request: Request, key: str | None = Security(_key_header)) -> None:
    expected = request.app.state.settings.api_key
    if expected and not (key and secrets.compare_digest(key.encode(), expected.encode())):
        raise HTTPException(401, f"missing or wrong API key: send it in the {API_KEY_HEADER} header",
                            headers={"WWW-Authenticate": "ApiKey"})


# ----------------------------------------------------------------------------------------- health
health = APIRouter(tags=["health"])


@health.get("/health", response_model=HealthOut, summary="liveness and queue state (no key needed)")
async def get_health(request: Request, registry: ModelRegistry = Depends(get_registry),
                     queue: InferenceQueue = Depends(get_queue)) -> HealthOut:
    return HealthOut(status="ok", version=__version__, backend=request.app.state.settings.backend,
                     models=registry.names(), queue=queue.stats())


# ----------------------------------------------------------------------------------------- models
ERRORS = {401: {"model": ErrorOut, "description": "an API key is set and the request lacks it"},
          404: {"model": ErrorOut, "description": "no model of that name"}}
models = APIRouter(prefix="/v1", tags=["models"], dependencies=[Depends(require_api_key)], responses=ERRORS)


@models.get("/models", response_model=ModelList, summary="the models this server answers for")
async def list_models(registry: ModelRegistry = Depends(get_registry)) -> ModelList:
    return ModelList(models=[m.info() for m in registry])


def served_model(name: str, registry: ModelRegistry = Depends(get_registry)) -> ServedModel:
    served = registry.get(name)
    if served is None:
        raise HTTPException(404, f"no model named {name!r}; this server has: {', '.join(registry.names())} "
                                 "(GET /v1/models lists them)")
    return served


@models.post("/models/{name}/predict", response_model=PredictionOut, summary="score one image",
             responses={413: {"model": ErrorOut, "description": "upload over --max-upload-mb"},
                        415: {"model": ErrorOut, "description": "the file is not a readable image"},
                        422: {"model": ErrorOut, "description": "no file, or an empty one"},
                        503: {"model": ErrorOut, "description": "queue full: retry after Retry-After seconds"}})
async def predict(file: UploadFile = File(description="the image: PNG, JPEG, BMP or TIFF"),
                  overlay: bool = Query(False, description="add overlay_png, the heatmap over the image"),
                  panel: bool = Query(False, description="add panel_png: actual | expected | heatmap"),
                  include_map: bool = Query(False, alias="map", description="add the anomaly map (float32, base64)"),
                  served: ServedModel = Depends(served_model),
                  queue: InferenceQueue = Depends(get_queue)) -> PredictionOut:
    filename = PurePath(file.filename or "upload").name
    data = await file.read()
    if not data:
        raise HTTPException(422, f"{filename}: the uploaded file is empty")
    result = await queue.run(score_upload, served, data, filename, overlay, panel, include_map)
    served.monitor.add(result["score"])
    return PredictionOut(**result)


@models.post("/models/{name}/feedback", response_model=FeedbackOut,
             summary="mark an image as normal: the model absorbs it in place and saves a new version",
             responses={409: {"model": ErrorOut, "description": "the model runs on onnx: feedback needs torch"},
                        413: {"model": ErrorOut, "description": "upload over --max-upload-mb"},
                        415: {"model": ErrorOut, "description": "the file is not a readable image"},
                        422: {"model": ErrorOut, "description": "no file, or a label other than 'good'"},
                        503: {"model": ErrorOut, "description": "queue full: retry after Retry-After seconds"}})
async def feedback(file: UploadFile = File(description="the image an inspector found normal"),
                   label: str = Form(description="'good' (the only label so far)"),
                   served: ServedModel = Depends(served_model),
                   queue: InferenceQueue = Depends(get_queue)) -> FeedbackOut:
    if label != "good":
        raise HTTPException(422, f"label {label!r} is not supported: send label=good for an image that is normal")
    filename = PurePath(file.filename or "upload").name
    data = await file.read()
    if not data:
        raise HTTPException(422, f"{filename}: the uploaded file is empty")
    return FeedbackOut(**await queue.run(accept_upload, served, data, filename))


@models.get("/models/{name}/stats", response_model=StatsOut,
            summary="recent scores against the calibration: says when they drift")
async def stats(served: ServedModel = Depends(served_model)) -> StatsOut:
    return StatsOut(model=served.name, **served.monitor.stats())


# ------------------------------------------------------------------------------------- inference
def decode_upload(data: bytes, filename: str) -> np.ndarray:
    """The uploaded bytes as read_image reads a file; an unreadable one is a 415 naming the upload."""
    suffix = PurePath(filename).suffix[:16]
    with tempfile.TemporaryDirectory(prefix="nextpatch-serve-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            from ..data.io import read_image

            return read_image(path)
        except ImageError as exc:
            fix = f" ({exc.fix})" if exc.fix else ""
            raise HTTPException(415, f"{filename}: {exc.reason}{fix}") from None


def png_b64(array: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def score_upload(served: ServedModel, data: bytes, filename: str, want_overlay: bool, want_panel: bool,
                 want_map: bool) -> dict:
    """Runs in a worker thread: decode, predict, and the pictures asked for."""
    start = time.perf_counter()
    image = decode_upload(data, filename)
    try:
        p = served.predictor.predict(image)
    except NextpatchError as exc:
        raise HTTPException(422, f"{filename}: {exc}") from None
    out = {"model": served.name, "filename": filename, "score": float(p.score), "is_anomalous": bool(p.is_anomalous),
           "threshold": float(served.predictor.threshold_), "raw_score": float(p.raw_score),
           "width": int(image.shape[1]), "height": int(image.shape[0]),
           "scale_warning": served.predictor.scale_warning(p)}
    if want_overlay or want_panel:
        from ..viz import overlay, prediction_panel

        if want_overlay:
            out["overlay_png"] = png_b64(overlay(image, p.anomaly_map))
        if want_panel:
            out["panel_png"] = png_b64(prediction_panel(image, p))
    if want_map:
        amap = np.ascontiguousarray(p.anomaly_map, dtype="<f4")
        out["anomaly_map"] = {"shape": list(amap.shape), "dtype": "float32",
                              "data": base64.b64encode(amap.tobytes()).decode("ascii")}
    out["ms"] = round((time.perf_counter() - start) * 1000, 2)
    return out


def accept_upload(served: ServedModel, data: bytes, filename: str) -> dict:
    """Feedback "good" for one upload: its score before and after the update."""
    start = time.perf_counter()
    image = decode_upload(data, filename)
    before = served.predictor.predict(image).score
    try:
        info = served.accept_good(image)
    except NextpatchError as exc:
        raise HTTPException(409, str(exc)) from None
    except OSError as exc:
        raise HTTPException(500, f"{filename}: the new version could not be saved ({exc}); the model is "
                                 "unchanged, in memory and on disk") from None
    after = served.predictor.predict(image).score
    return {"model": served.name, "filename": filename, "label": "good", "model_version": served.predictor.version_,
            "score_before": before, "score_after": after, "accepted_rows": info["rows"], "radius": info["radius"],
            "ms": round((time.perf_counter() - start) * 1000, 2)}


# -------------------------------------------------------------------------------------- web page
page = APIRouter(include_in_schema=False)


@page.get("/")
async def index() -> FileResponse:
    """The web page: drop images, see score, pass/fail, the panel and the session's history."""
    return FileResponse(str(STATIC / "index.html"), media_type="text/html")


@page.get("/docs")
async def docs() -> FileResponse:
    """The API reference, drawn from /openapi.json by a page of our own (FastAPI's loads a CDN)."""
    return FileResponse(str(STATIC / "docs.html"), media_type="text/html")
