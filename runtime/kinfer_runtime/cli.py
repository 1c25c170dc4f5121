"""`kinfer-runtime serve` and `kinfer-runtime demo-model`."""

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from kinfer_runtime import __version__
from kinfer_runtime.config import add_serve_arguments, settings_from_args
from kinfer_runtime.demo import VARIANTS

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kinfer-runtime",
        description="Open Inference Protocol (KServe v2) server for ONNX and PyTorch models.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve one model over HTTP")
    add_serve_arguments(serve, os.environ)
    demo = commands.add_parser(
        "demo-model", help="write the demo image classifier (model.onnx, model.pt, model.pt2)"
    )
    demo.add_argument("--out", type=Path, required=True, help="directory to write into")
    demo.add_argument(
        "--variant",
        choices=VARIANTS,
        default="normal",
        help="normal; slow (~8x the work); broken (fails to load); faulty (fails on real input)",
    )
    demo.add_argument("--onnx-only", action="store_true", help="skip the PyTorch formats")
    commands.add_parser(
        "fill-cache",
        help="download KINFER_MODEL_URI into KINFER_SHARED_CACHE_DIR, verify it, evict old ones",
    )
    return parser


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _demo_model(args: argparse.Namespace) -> int:
    from kinfer_runtime.demo import build_demo_model

    with warnings.catch_warnings():
        # torch marks TorchScript deprecated; the format is still one we serve and write.
        warnings.simplefilter("ignore", FutureWarning)
        written = build_demo_model(args.out, args.variant, with_torch=not args.onnx_only)
    for path in written:
        print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo-model":
        return _demo_model(args)
    if args.command == "fill-cache":
        from kinfer_runtime.cachefill import main as fill_main

        _configure_logging(os.environ.get("KINFER_LOG_LEVEL", "info"))
        log_path = os.environ.get("KINFER_TERMINATION_LOG", "/dev/termination-log")
        return fill_main(os.environ, Path(log_path) if log_path else None)
    try:
        settings = settings_from_args(args, os.environ)
    except ValueError as exc:
        _parser().error(str(exc))
    _configure_logging(settings.log_level)
    from kinfer_runtime.server import serve  # FastAPI/uvicorn only for the serve command

    return serve(settings)
