"""``xylen model-server``: one model host (LightGBM/ONNX/River) on uvicorn, one worker.

Settings come from the flags, then the environment, then ``--env-file`` (keys of
``model_server/models.env.example``); a bad value exits 2 with a line naming the key.  The bearer
token is ``XYLEN_MODEL_TOKEN`` (required unless the host is loopback).  SIGINT/SIGTERM stop the
server gracefully: in-flight requests finish, background tasks are cancelled and awaited.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    """Add the ``model-server`` subcommand to the top-level subparsers."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "model-server",
        help="serve a model over HTTP (/predict /retrain /health /metrics)",
        description="Serve one model (LightGBM with ONNX fallback, ONNX, or River) over HTTP.",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``xylen model-server`` (shared with ``python -m model_server``)."""
    parser.add_argument("--host", default=None, help="address to listen on (default $HOST, else 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default $PORT, else 8001)")
    parser.add_argument(
        "--model",
        default=None,
        metavar="PATH",
        help="a model directory, or a folder of version directories "
        "(default $MODEL_PATH, else <home>/models)",
    )
    parser.add_argument(
        "--model-type",
        default=None,
        choices=["lightgbm", "onnx", "river"],
        help="backend preferred (default $MODEL_TYPE, else lightgbm with ONNX fallback)",
    )
    parser.add_argument(
        "--env-file", default=None, metavar="FILE", help="settings file (see models.env.example)"
    )


def build_settings(args: argparse.Namespace) -> Any:
    """Validated :class:`model_server.settings.ServerSettings` (ConfigError: exit 2)."""
    from model_server.settings import load_settings

    return load_settings(
        env_file=Path(args.env_file) if args.env_file else None,
        host=args.host,
        port=args.port,
        model_path=Path(args.model) if args.model else None,
        model_type=args.model_type,
        xylen_home=getattr(args, "home", None),
    )


def run(args: argparse.Namespace) -> int:
    """Validate the settings, then serve until SIGINT/SIGTERM."""
    from model_server.slim_imports import prepare_serving_process

    prepare_serving_process()  # before the app import: keeps pandas and scikit-learn out
    from model_server.app import serve

    settings = build_settings(args)
    print(f"model server on http://{settings.host}:{settings.port} (Ctrl-C to stop)", flush=True)
    serve(settings)
    return 0
