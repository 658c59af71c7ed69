"""`nextpatch serve`: a real server process answers concurrent predicts, refuses bad uploads with one
JSON line, stays healthy; the API key and the bounded queue; the web page in a real headless Chromium."""
from __future__ import annotations

import asyncio
import io
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def images(trained, tiny_dataset) -> dict[str, Path]:
    """The tiny model's highest-scoring defect image (it fails) and a good test image (it passes)."""
    defects = sorted(p for p in (tiny_dataset / "test").rglob("*.png") if p.parent.name != "good")
    goods = sorted((tiny_dataset / "test" / "good").glob("*.png"))
    scores = [p.score for p in trained.predict_batch(defects)]
    good_scores = [p.score for p in trained.predict_batch(goods)]
    defect = defects[int(np.argmax(scores))]
    good = goods[int(np.argmin(good_scores))]
    assert max(scores) > 1.0 > min(good_scores), "the tiny model must fail a defect and pass a good image"
    return {"defect": defect, "good": good}


@pytest.fixture(scope="module")
def server(saved_model, tmp_path_factory):
    """`nextpatch serve MODEL --max-upload-mb 5` in its own process, its log in a file."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "nextpatch", "serve", str(saved_model), "--port", str(port),
                                 "--max-upload-mb", "5", "--workers", "2"], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"the server exited: {log.read_text()[-2000:]}")
        time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail(f"the server did not answer /health in 120 s: {log.read_text()[-2000:]}")
    yield {"url": url, "log": log, "model": saved_model.name}
    proc.terminate()
    proc.wait(20)


def post(url: str, name: str, data: bytes, **params) -> httpx.Response:
    return httpx.post(url, files={"file": (name, data, "image/png")}, params=params, timeout=120)


def test_concurrent_predicts_and_bad_uploads(server, images):
    url, model = server["url"], server["model"]
    predict = f"{url}/v1/models/{model}/predict"
    defect, good = images["defect"].read_bytes(), images["good"].read_bytes()
    jobs = [("defect.png", defect) if i % 2 else ("good.png", good) for i in range(40)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda j: post(predict, *j), jobs))
    assert [r.status_code for r in answers] == [200] * 40
    verdicts = {r.json()["filename"]: r.json()["is_anomalous"] for r in answers}
    assert verdicts == {"defect.png": True, "good.png": False}
    assert all(r.json()["model"] == model and r.json()["ms"] > 0 for r in answers)

    with_panel = post(predict, "defect.png", defect, panel="true", map="true").json()
    assert with_panel["panel_png"] and with_panel["anomaly_map"]["shape"] == [with_panel["height"], with_panel["width"]]

    too_big = post(predict, "big.png", os.urandom(6 << 20))
    assert too_big.status_code == 413 and "--max-upload-mb" in too_big.json()["detail"]
    text = post(predict, "notes.png", b"this is a text file, not an image\n" * 20)
    assert text.status_code in (415, 422) and "notes.png" in text.json()["detail"]
    unknown = post(f"{url}/v1/models/no-such-model/predict", "good.png", good)
    assert unknown.status_code == 404 and model in unknown.json()["detail"]
    missing = httpx.post(predict, data={"x": "1"}, timeout=30)
    assert missing.status_code == 422 and "'file'" in missing.json()["detail"]

    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    spec = httpx.get(f"{url}/openapi.json").json()
    assert "/v1/models/{name}/predict" in spec["paths"] and "/v1/models" in spec["paths"]
    assert "nextpatch" in httpx.get(f"{url}/").text and "openapi.json" in httpx.get(f"{url}/docs").text
    listed = httpx.get(f"{url}/v1/models").json()["models"]
    assert [m["name"] for m in listed] == [model] and listed[0]["threshold"] > 0
    assert "Traceback" not in server["log"].read_text()


class SlowPredictor:
    """A fitted detector whose predict takes at least `delay` seconds (to fill the queue)."""

    def __init__(self, detector, delay: float):
        self.detector, self.delay = detector, delay
        self.threshold_, self.config = detector.threshold_, detector.config
        self.training_, self.calibration_ = detector.training_, detector.calibration_

    def predict(self, image):
        time.sleep(self.delay)
        return self.detector.predict(image)

    def scale_warning(self, prediction):
        return self.detector.scale_warning(prediction)


def in_process_app(trained, **settings):
    from nextpatch.serve.app import Settings, create_app
    from nextpatch.serve.registry import ModelRegistry, ServedModel

    delay = settings.pop("delay", 0.0)
    predictor = SlowPredictor(trained, delay) if delay else trained
    registry = ModelRegistry([ServedModel("m", Path("m"), "torch", predictor)])
    return create_app(registry, Settings(**settings))


def test_an_upload_seen_at_another_scale_than_training_carries_a_warning(trained, images):
    """The answer says when an image was seen at a scale the training images were not (its score means
    little), and says nothing for an image of the training images' size."""
    from fastapi.testclient import TestClient
    from PIL import Image

    client = TestClient(in_process_app(trained))
    good = images["good"].read_bytes()
    same = client.post("/v1/models/m/predict", files={"file": ("good.png", good, "image/png")})
    assert same.status_code == 200 and same.json()["scale_warning"] is None
    big = io.BytesIO()  # the same good image three times as large: the model sees it at 1/3 the scale
    Image.fromarray(np.tile(np.asarray(Image.open(io.BytesIO(good)).convert("RGB")), (3, 3, 1))).save(big, format="PNG")
    frame = client.post("/v1/models/m/predict", files={"file": ("big.png", big.getvalue(), "image/png")})
    assert frame.status_code == 200 and "0.33x its pixels" in frame.json()["scale_warning"]


def test_api_key_is_required_when_set(trained, images):
    from fastapi.testclient import TestClient

    client = TestClient(in_process_app(trained, api_key="s3cret"))
    files = {"file": ("good.png", images["good"].read_bytes(), "image/png")}
    refused = client.post("/v1/models/m/predict", files=files)
    assert refused.status_code == 401 and "X-API-Key" in refused.json()["detail"]
    assert client.get("/v1/models").status_code == 401
    assert client.get("/health").status_code == 200  # liveness needs no key
    ok = client.post("/v1/models/m/predict", files=files, headers={"X-API-Key": "s3cret"})
    assert ok.status_code == 200 and ok.json()["is_anomalous"] is False


def test_a_full_queue_answers_503_with_retry_after(trained, images):
    app = in_process_app(trained, workers=1, queue_size=1, delay=0.5)
    data = images["good"].read_bytes()

    async def burst():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            return await asyncio.gather(*[client.post("/v1/models/m/predict", files={"file": ("g.png", data)})
                                          for _ in range(5)])

    answers = asyncio.run(burst())
    codes = sorted(r.status_code for r in answers)
    assert codes.count(200) == 2 and codes.count(503) == 3, codes  # one running + one waiting admitted
    busy = next(r for r in answers if r.status_code == 503)
    assert int(busy.headers["Retry-After"]) >= 1 and "busy" in busy.json()["detail"]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_web_page_shows_a_defect_failing_with_its_panel(server, images):
    sync_api = pytest.importorskip("playwright.sync_api")
    browser_path = chromium_path()
    if browser_path is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(server["url"] + "/")
            page.wait_for_function("document.querySelector('#model').options.length > 0", timeout=30000)
            page.set_input_files("#file", str(images["defect"]))
            page.wait_for_function("document.querySelector('#verdict').textContent.length > 0", timeout=60000)
            assert page.text_content("#verdict") == "FAIL"
            assert float(page.text_content("#score")) > 1.0
            page.wait_for_function("document.querySelector('#panel').naturalWidth > 0", timeout=30000)
            width = page.evaluate("document.querySelector('#panel').naturalWidth")
            height = page.evaluate("document.querySelector('#panel').naturalHeight")
            assert width > 2 * height  # actual | expected | heatmap, side by side
            page.set_input_files("#file", str(images["good"]))
            page.wait_for_function("document.querySelectorAll('#history tbody tr').length == 2", timeout=60000)
            assert page.text_content("#verdict") == "PASS"
            verdicts = page.eval_on_selector_all("#history tbody tr td:nth-child(5)", "tds => tds.map(t => t.textContent)")
            assert verdicts == ["PASS", "FAIL"]  # newest first
        finally:
            browser.close()
