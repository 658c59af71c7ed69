"""`nextpatch serve`: the verb's parser and command (FastAPI and uvicorn import only when it runs)."""
from __future__ import annotations

import logging
import sys

from ..errors import NextpatchError
from ..export_cli import BACKENDS, verb_parser


def add_parser(sub) -> None:
    """Register `serve` on the CLI's subparsers."""
    p = verb_parser(
        sub, "serve", cmd_serve, many_models=True, extra="serve",
        help="serve models over HTTP: a REST API and a web page",
        description="Serve one or more trained models: POST /v1/models/NAME/predict (multipart field 'file') "
                    "answers the score, pass/fail and, on request, the overlay and panel PNGs; GET /v1/models "
                    "lists the models, GET /health the state, / is a web page to drop images on, /docs the API "
                    "reference (offline). Each model is named by its folder name.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 for the network)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, metavar="MB",
                   help="largest accepted upload in MB (default 20); larger ones are answered 413 unread")
    p.add_argument("--api-key", metavar="KEY",
                   help="require this key in the X-API-Key header of /v1 requests (default: no key)")
    p.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="run the models with torch (default) or onnxruntime (needs nextpatch[export])")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="inferences that run at once, each in a worker thread (default 1)")
    p.add_argument("--queue-size", type=int, default=32, metavar="N",
                   help="requests that may wait for a worker (default 32); more are answered 503 with Retry-After")
    p.add_argument("--device", metavar="DEV", help="'cpu', 'cuda' or 'auto' (default: as trained)")


def _require_extra() -> None:
    missing = []
    for module in ("fastapi", "uvicorn", "multipart"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise NextpatchError(f"`nextpatch serve` needs {', '.join(missing)}: pip install \"nextpatch[serve]\"")


def cmd_serve(args) -> int:
    if args.max_upload_mb <= 0:
        raise NextpatchError(f"--max-upload-mb must be > 0 (got {args.max_upload_mb:g})")
    _require_extra()
    import uvicorn

    from .app import Settings, create_app
    from .registry import ModelRegistry

    settings = Settings(max_upload_bytes=int(args.max_upload_mb * (1 << 20)), api_key=args.api_key,
                        backend=args.backend, workers=args.workers, queue_size=args.queue_size)
    registry = ModelRegistry.load(args.models, backend=args.backend, device=args.device)
    app = create_app(registry, settings)
    # the service's own lines (errors, one per line) at INFO; uvicorn keeps its access log
    logging.getLogger("nextpatch.serve").setLevel(logging.INFO)
    where = f"http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}"
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        print(f"warning: listening on {args.host} without --api-key: anyone who can reach it can use it",
              file=sys.stderr)
    print(f"serving {', '.join(registry.names())} ({args.backend}) at {where}/ (API reference {where}/docs)"
          + ("; API key required" if args.api_key else ""), file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
