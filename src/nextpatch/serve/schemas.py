"""Response bodies, as pydantic models: they are what /openapi.json documents."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    detail: str = Field(description="one line: what went wrong and how to fix it")


class QueueOut(BaseModel):
    workers: int = Field(description="inferences that run at once")
    capacity: int = Field(description="requests admitted at once (running + waiting); more get 503")
    in_flight: int
    refused: int = Field(description="requests refused with 503 since start")


class HealthOut(BaseModel):
    status: str = Field(examples=["ok"])
    version: str = Field(description="nextpatch version")
    backend: str
    models: list[str]
    queue: QueueOut


class ModelInfo(BaseModel):
    name: str = Field(description="the model directory's folder name; the {name} of the predict URL")
    version: str = Field(description="first 12 hex digits of the weights' SHA-256")
    backend: str = Field(examples=["torch"])
    format_version: str
    nextpatch_version: str = Field(description="nextpatch version that trained it")
    model_version: int = Field(1, description="the model directory's version: 1 as trained, +1 per update / feedback")
    mask: float | None = Field(None, description="share of the image inside the inspection mask; null: no mask")
    threshold: float = Field(description="raw score at which an image is anomalous; scores below are raw / threshold")
    image_size: int = Field(description="side of the square the network sees, in pixels")
    training: dict[str, Any] = Field(description="training summary: images, steps, seconds, final losses")
    calibration: dict[str, Any] = Field(description="held-out good images the threshold came from")


class ModelList(BaseModel):
    models: list[ModelInfo]


class AnomalyMap(BaseModel):
    shape: list[int] = Field(description="[height, width], the uploaded image's size")
    dtype: str = Field(default="float32", description="little-endian float32, row-major")
    data: str = Field(description="base64 of the map's bytes; 1.0 = the threshold")


class PredictionOut(BaseModel):
    model: str
    filename: str
    score: float = Field(description="normalised anomaly score: 1.0 = the threshold")
    is_anomalous: bool = Field(description="score > 1.0: the image fails")
    threshold: float = Field(description="the model's threshold on the raw score")
    raw_score: float
    width: int
    height: int
    ms: float = Field(description="server time for this image: decode, inference, pictures")
    overlay_png: str | None = Field(default=None, description="base64 PNG: heatmap over the image (?overlay=true)")
    panel_png: str | None = Field(default=None,
                                  description="base64 PNG: actual | expected | heatmap (?panel=true)")
    anomaly_map: AnomalyMap | None = Field(default=None, description="the map itself (?map=true)")
    scale_warning: str | None = Field(default=None, description="set when the image was seen at a scale the "
                                      "training images were not (e.g. a full frame for a model trained on crops): "
                                      "its score means little")


class FeedbackOut(BaseModel):
    model: str
    filename: str
    label: str = Field(examples=["good"])
    model_version: int = Field(description="the model's version after this feedback (saved to its directory)")
    score_before: float = Field(description="the image's score before the update")
    score_after: float = Field(description="its score now: <= 1.0 once it passes")
    accepted_rows: int = Field(description="feature rows of accepted normals the model now holds")
    radius: float = Field(description="distance within which a token counts as an accepted normal")
    ms: float


class StatsOut(BaseModel):
    model: str
    count: int = Field(description="scores in the window")
    total: int = Field(description="scores since the server started")
    window: int
    share_above: float = Field(description="share of the window's images above the threshold")
    expected_share: float = Field(description="what the calibration images predict")
    median_passing: float | None = Field(description="median score of the window's passing images")
    expected_median: float = Field(description="the calibration images' median score")
    updated: bool = Field(False, description="the model absorbed good images since its calibration: then only "
                                             "a rise of the passing median counts as drift")
    drift: bool = Field(description="true when either moved beyond what the calibration predicts")
    reasons: list[str] = Field(description="one line per moved statistic")
