"""The cache-fill command: one verified download per version, progress lines, eviction."""

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

from kinfer_runtime.cachefill import PROGRESS_PREFIX, Entry, choose_evictions, fill
from kinfer_runtime.sources import cache_entry

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()
OTHER = b"another version" * 1000
OTHER_DIGEST = hashlib.sha256(OTHER).hexdigest()


def test_evicts_least_recently_touched_until_it_fits() -> None:
    cached = [Entry("old", 50, 1.0), Entry("mid", 50, 2.0), Entry("new", 50, 3.0)]
    assert choose_evictions(cached, keep=(), max_bytes=100) == ["old"]
    assert choose_evictions(cached, keep=(), max_bytes=50) == ["old", "mid"]
    assert choose_evictions(cached, keep=(), max_bytes=None) == []


def test_never_evicts_a_live_version_even_over_the_limit() -> None:
    cached = [Entry("live-old", 80, 1.0), Entry("unused", 10, 2.0), Entry("live", 80, 3.0)]
    assert choose_evictions(cached, keep={"live-old", "live"}, max_bytes=50) == ["unused"]


def test_fill_downloads_once_then_reuses(model_http, tmp_path: Path) -> None:
    model_http.files["/m.onnx"] = PAYLOAD
    out = io.StringIO()
    first = fill(model_http.url("/m.onnx"), DIGEST, tmp_path, out=out)
    second = fill(model_http.url("/m.onnx"), DIGEST, tmp_path, out=out)
    assert first.startswith("downloaded 1 MiB") and second.startswith("already cached 1 MiB")
    assert len(model_http.requests) == 1
    assert cache_entry(model_http.url("/m.onnx"), tmp_path, DIGEST).read_bytes() == PAYLOAD
    assert out.getvalue().splitlines()[-1] == f"{PROGRESS_PREFIX} done={2**20} total={2**20}"


def test_fill_evicts_unused_versions_but_keeps_live_ones(model_http, tmp_path: Path) -> None:
    model_http.files["/a.onnx"] = PAYLOAD
    model_http.files["/b.onnx"] = OTHER
    model_http.files["/c.onnx"] = PAYLOAD + b"c"
    c_digest = hashlib.sha256(PAYLOAD + b"c").hexdigest()
    fill(model_http.url("/a.onnx"), DIGEST, tmp_path, out=io.StringIO())
    fill(model_http.url("/b.onnx"), OTHER_DIGEST, tmp_path, out=io.StringIO())
    os.utime(tmp_path / OTHER_DIGEST[:32], (1, 1))  # b is the least recently used
    summary = fill(
        model_http.url("/c.onnx"),
        c_digest,
        tmp_path,
        keep={OTHER_DIGEST[:32]},  # b is live: a goes instead, though it is newer
        max_bytes=2**20 + 20_000,
        out=io.StringIO(),
    )
    assert summary.endswith(f"evicted {DIGEST[:32]}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([OTHER_DIGEST[:32], c_digest[:32]])


def test_fill_command_reports_a_bad_digest_in_its_termination_message(
    model_http, tmp_path: Path
) -> None:
    model_http.files["/m.onnx"] = PAYLOAD
    log = tmp_path / "termination-log"
    env = {
        **os.environ,
        "KINFER_MODEL_URI": model_http.url("/m.onnx"),
        "KINFER_MODEL_SHA256": "0" * 64,
        "KINFER_SHARED_CACHE_DIR": str(tmp_path / "cache"),
        "KINFER_TERMINATION_LOG": str(log),
    }
    run = subprocess.run(
        [sys.executable, "-m", "kinfer_runtime", "fill-cache"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert "cannot cache" in log.read_text() and "sha256 mismatch" in log.read_text()
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
