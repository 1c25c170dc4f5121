"""A real model and real images with no download: a small CNN trained on scikit-learn's bundled
digits (1,797 8x8 images), exported to ONNX as a kinfer bundle, and held-out digits as PNGs.

    python e2e/digits.py OUT_DIR

writes OUT_DIR/bundle/ (kinfer.yaml, model.onnx, labels.txt, handler.py), the same bundle as
OUT_DIR/digits.tar.gz and OUT_DIR/digits.zip, the held-out images as OUT_DIR/images/NNNN.png
with OUT_DIR/images/truth.json ({"NNNN.png": "7"}), and OUT_DIR/summary.json (accuracies,
archive sha256s). Training takes a few seconds on one CPU and is deterministic (seeded).

Needs torch, scikit-learn and Pillow (the `dev` extra); the runtime needs none but Pillow.
The PNGs are 32x32 (each digit pixel 4x4, ink bright on black); the bundle's handler decodes
them, box-resizes to 8x8 and scales to [0, 1] as in training.
"""

import argparse
import io
import json
import shutil
import tarfile
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

__all__ = ["DigitsArtifacts", "build", "in_process_labels"]

SEED: Final = 0
HELD_OUT: Final = 0.2
PNG_SCALE: Final = 4  # 8x8 -> 32x32

MANIFEST: Final = """\
# A kinfer model bundle (see README "Model bundles").
model: model.onnx
format: onnx
labels: labels.txt
handler: handler.py:DigitsClassifier
handlerOptions:
  size: [8, 8]
  mode: L
  resample: box
  scale: 0.00392156862745098  # 1/255: pixels back to [0, 1] as in training
  topK: 3
"""

HANDLER: Final = '''\
"""The digits bundle's handler: the shipped image classifier, as a file in the bundle."""

from kinfer_runtime.handlers.image_classification import ImageClassifier


class DigitsClassifier(ImageClassifier):
    """Grayscale 8x8 digits; labels.txt names the classes 0-9."""
'''


@dataclass(frozen=True)
class DigitsArtifacts:
    root: Path
    bundle: Path
    tar_gz: Path
    zip: Path
    images: Path
    truth: dict[str, str]
    summary: dict[str, Any]


def _train(x: np.ndarray, y: np.ndarray) -> Any:
    import torch

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # a tiny model: more threads only contend (and vary the result)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16 * 4 * 4, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 10),
    )
    optimiser = torch.optim.Adam(net.parameters(), lr=5e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(SEED)
    for _ in range(15):
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), 64):
            batch = order[start : start + 64]
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(xt[batch]), yt[batch])
            loss.backward()
            optimiser.step()
    return net.eval()


def _export(net: Any, path: Path) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated
        torch.onnx.export(
            net,
            (torch.zeros(1, 1, 8, 8),),
            str(path),
            input_names=["pixels"],
            output_names=["logits"],
            dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    pixels = np.rint(image * 255.0 / 16.0).astype(np.uint8)
    big = np.kron(pixels, np.ones((PNG_SCALE, PNG_SCALE), dtype=np.uint8))
    out = io.BytesIO()
    Image.fromarray(big, mode="L").save(out, format="PNG")
    return out.getvalue()


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _archives(bundle: Path, root: Path) -> tuple[Path, Path]:
    tar_gz, zipped = root / "digits.tar.gz", root / "digits.zip"
    with tarfile.open(tar_gz, "w:gz") as tar:
        for path in sorted(bundle.iterdir()):
            tar.add(path, arcname=path.name)
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(bundle.iterdir()):
            zf.write(path, arcname=path.name)
    return tar_gz, zipped


def in_process_labels(bundle: Path, pngs: list[bytes]) -> list[str]:
    """The top label of each PNG through the bundle's handler and ONNX Runtime, in process:
    what serving must reproduce."""
    from kinfer_runtime.backends import BackendOptions, open_backend
    from kinfer_runtime.bundle import open_bundle
    from kinfer_runtime.handlers import HandlerContext, HandlerRequest
    from kinfer_runtime.handlers._loader import load_handler

    opened = open_bundle(bundle, bundle.parent / "extracted")
    backend = open_backend(opened.model_path, opened.format, BackendOptions(device="cpu"))
    backend.load()
    assert opened.manifest is not None and opened.manifest.handler is not None
    context = HandlerContext(
        opened.root, backend.signature, opened.labels, opened.manifest.handler_options
    )
    handler = load_handler(opened.manifest.handler, context)
    labels = []
    for png in pngs:
        request = HandlerRequest({}, body=png, content_type="image/png")
        result = handler.postprocess(backend.infer(handler.preprocess(request)), request)
        labels.append(str(result["label"][0][0]))
    return labels


def build(root: Path) -> DigitsArtifacts:
    """Trains, exports and writes everything under `root` (replacing what is there)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test, _, raw_test = train_test_split(
        x, y, digits.images, test_size=HELD_OUT, random_state=SEED, stratify=y
    )
    started = time.perf_counter()
    net = _train(x_train, y_train)
    train_s = time.perf_counter() - started
    import torch

    with torch.no_grad():
        tensor_accuracy = float((net(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())

    shutil.rmtree(root, ignore_errors=True)
    bundle = root / "bundle"
    images = root / "images"
    bundle.mkdir(parents=True)
    images.mkdir()
    _export(net, bundle / "model.onnx")
    (bundle / "kinfer.yaml").write_text(MANIFEST)
    (bundle / "labels.txt").write_text("".join(f"{d}\n" for d in range(10)))
    (bundle / "handler.py").write_text(HANDLER)

    truth: dict[str, str] = {}
    pngs = []
    for i, (image, target) in enumerate(zip(raw_test, y_test, strict=True)):
        name = f"{i:04d}.png"
        png = _png(image)
        (images / name).write_bytes(png)
        truth[name] = str(int(target))
        pngs.append(png)
    (images / "truth.json").write_text(json.dumps(truth, indent=0, sort_keys=True))
    tar_gz, zipped = _archives(bundle, root)

    labels = in_process_labels(bundle, pngs)
    png_accuracy = sum(a == b for a, b in zip(labels, truth.values(), strict=True)) / len(truth)
    summary = {
        "train": len(x_train),
        "train_seconds": round(train_s, 2),
        "held_out": len(x_test),
        "tensor_accuracy": tensor_accuracy,
        "png_accuracy_in_process": png_accuracy,
        "in_process_labels": dict(zip(truth, labels, strict=True)),
        "tar_gz_sha256": _sha256(tar_gz),
        "zip_sha256": _sha256(zipped),
    }
    (root / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
    return DigitsArtifacts(root, bundle, tar_gz, zipped, images, truth, summary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    artifacts = build(args.out)
    s = artifacts.summary
    print(
        f"digits: trained on {s['train']} in {s['train_seconds']}s, held out {s['held_out']}: "
        f"accuracy {s['tensor_accuracy']:.4f} (tensors), {s['png_accuracy_in_process']:.4f} (PNG, "
        f"in process); bundle {artifacts.bundle}, tar.gz sha256 {s['tar_gz_sha256']}"
    )


if __name__ == "__main__":
    main()
