"""Serving throughput and latency of `nextpatch serve` on loopback, torch vs onnxruntime (issue 25).

    python benchmarks/serve_load.py                       # trains a quick default-preset model first
    python benchmarks/serve_load.py --model MODEL_DIR --requests 64 --out benchmarks/results

For each backend: starts `nextpatch serve MODEL --backend B --workers W` in its own process, waits for
/health, sends `--requests` predicts of one PNG (`--width` x `--height`) from 1, 4 and 16 concurrent
clients (threads with httpx, each request timed from send to answer), and reports requests per second
and p50 / p99 latency, plus how many were not answered 200 (a full queue answers 503). Bounded: at most
`--requests` per level and `--seconds` per level. Writes OUT/serve_load.json and prints a Markdown table.
Timings on a shared machine move by 10-30 % between runs: compare backends within one run.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from throughput import make_images, train_model  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, backend: str, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "nextpatch", "serve", str(model), "--port", str(port),
                             "--backend", backend, "--workers", str(workers), "--queue-size", "64"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the {backend} server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    sys.exit(f"the {backend} server did not answer /health in 300 s")


def load_level(url: str, name: str, data: bytes, clients: int, requests: int, seconds: float) -> dict:
    predict = f"{url}/v1/models/{name}/predict"
    stop_at = time.perf_counter() + seconds

    def one(_):
        if time.perf_counter() > stop_at:
            return None
        start = time.perf_counter()
        r = httpx.post(predict, files={"file": ("part.png", data, "image/png")}, timeout=120)
        return r.status_code, (time.perf_counter() - start) * 1000

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = [x for x in pool.map(one, range(requests)) if x is not None]
    wall = time.perf_counter() - start
    ms = np.array([t for code, t in done if code == 200])
    return {"clients": clients, "sent": len(done), "ok": int(len(ms)), "rps": round(len(ms) / wall, 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="model directory (default: train a quick one)")
    ap.add_argument("--requests", type=int, default=48, help="predicts per concurrency level (default 48)")
    ap.add_argument("--seconds", type=float, default=60, help="time limit per level (default 60)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--workers", type=int, default=1, help="the server's --workers (default 1)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--backends", nargs="+", default=["torch", "onnx"])
    ap.add_argument("--out", type=Path, default=HERE / "results")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="nextpatch-serve-load-") as tmp:
        root = Path(tmp)
        model = a.model or train_model(root, 10)
        data = make_images(root / "img", 1, a.width, a.height)[0].read_bytes()
        for backend in a.backends:
            proc, url = start_server(model, backend, a.workers)
            try:
                load_level(url, model.resolve().name, data, 1, 3, a.seconds)  # warm-up
                for clients in a.clients:
                    row = {"backend": backend, **load_level(url, model.resolve().name, data, clients, a.requests, a.seconds)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                proc.terminate()
                proc.wait(30)
    lines = ["| backend | clients | requests/s | p50 ms | p99 ms | answered 200 |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['backend']} | {r['clients']} | {r['rps']} | {r['p50_ms']} | {r['p99_ms']} | {r['ok']}/{r['sent']} |"
              for r in rows]
    print("\n".join(lines))
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "serve_load.json").write_text(json.dumps(
        {"image": [a.width, a.height], "workers": a.workers, "cores": os.cpu_count(),
         "when": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
