"""Model sources: local paths and URLs, sha256 checks, and atomic downloads."""

import hashlib
import threading
import time
from pathlib import Path

import pytest
from kinfer_runtime._download import download
from kinfer_runtime.errors import ModelLoadError
from kinfer_runtime.sources import cache_entry, redact, resolve_model

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(PAYLOAD)
    return path


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kinfer_runtime._download._BACKOFF_S", 0.0)


def test_plain_path_and_file_uri_resolve_in_place(model_file: Path, tmp_path: Path) -> None:
    assert resolve_model(str(model_file), cache_dir=tmp_path) == model_file
    assert resolve_model(model_file.as_uri(), cache_dir=tmp_path) == model_file


def test_directory_resolves_to_the_model_file_inside(model_file: Path, tmp_path: Path) -> None:
    assert resolve_model(str(model_file.parent), cache_dir=tmp_path) == model_file


def test_missing_file_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model(str(tmp_path / "nope.onnx"), cache_dir=tmp_path)


def test_local_sha256_match_and_mismatch(model_file: Path, tmp_path: Path) -> None:
    assert resolve_model(str(model_file), cache_dir=tmp_path, sha256=DIGEST.upper()) == model_file
    with pytest.raises(
        ModelLoadError, match=f"sha256 mismatch .* expected {'0' * 64}, got {DIGEST}"
    ):
        resolve_model(str(model_file), cache_dir=tmp_path, sha256="0" * 64)


def test_unsupported_scheme_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="unsupported model URI scheme 'ftp'"):
        resolve_model("ftp://host/model.onnx", cache_dir=tmp_path)


def test_http_download_lands_atomically_and_sends_the_auth_header(model_http, tmp_path: Path):
    model_http.files["/models/model.onnx"] = PAYLOAD
    model_http.hold = threading.Event()
    result: list[Path] = []
    worker = threading.Thread(
        target=lambda: result.append(
            resolve_model(
                model_http.url("/models/model.onnx"),
                cache_dir=tmp_path,
                sha256=DIGEST,
                auth_header="Bearer s3cret",
            )
        )
    )
    worker.start()
    assert model_http.half_sent.wait(10)
    # Mid-download: only a hidden partial file exists, never the final name. (The server has
    # sent half; the client writes it a moment later.)
    deadline = time.monotonic() + 10
    while not (files := [p for p in tmp_path.rglob("*") if p.is_file()]):
        assert time.monotonic() < deadline, "no partial file while the download is held"
        time.sleep(0.01)
    assert len(files) == 1 and files[0].name.startswith(".model.onnx.")
    assert files[0].name.endswith(".partial")
    model_http.hold.set()
    worker.join(30)
    (path,) = result
    assert path.name == "model.onnx" and path.read_bytes() == PAYLOAD
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [path]
    assert model_http.requests[0]["Authorization"] == "Bearer s3cret"


def test_pinned_download_is_reused_from_the_cache(model_http, tmp_path: Path) -> None:
    model_http.files["/m.onnx"] = PAYLOAD
    first = resolve_model(model_http.url("/m.onnx"), cache_dir=tmp_path, sha256=DIGEST)
    second = resolve_model(model_http.url("/m.onnx"), cache_dir=tmp_path, sha256=DIGEST)
    assert first == second
    assert len(model_http.requests) == 1


def test_download_with_wrong_sha256_leaves_no_file(model_http, tmp_path: Path) -> None:
    model_http.files["/m.onnx"] = PAYLOAD
    with pytest.raises(ModelLoadError, match="sha256 mismatch"):
        resolve_model(model_http.url("/m.onnx"), cache_dir=tmp_path, sha256="1" * 64)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


@pytest.mark.usefixtures("no_backoff")
def test_truncated_download_is_an_error_and_leaves_no_file(model_http, tmp_path: Path) -> None:
    model_http.files["/m.onnx"] = PAYLOAD
    model_http.truncate = True
    with pytest.raises(ModelLoadError, match=r"download of .* (truncated|failed)"):
        resolve_model(model_http.url("/m.onnx"), cache_dir=tmp_path)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_http_error_is_a_clear_load_error(model_http, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="HTTP 404"):
        resolve_model(model_http.url("/missing.onnx"), cache_dir=tmp_path)


def test_redact_drops_credentials_and_query() -> None:
    assert (
        redact("https://user:pw@example.com:8443/m/model.onnx?X-Amz-Signature=abc#x")
        == "https://example.com:8443/m/model.onnx"
    )
    assert redact("/models/model.onnx") == "/models/model.onnx"


@pytest.mark.usefixtures("no_backoff")
def test_cut_download_resumes_with_a_range_request(model_http, tmp_path: Path) -> None:
    model_http.files["/m.onnx"] = PAYLOAD
    model_http.cut_times = 1
    seen: list[tuple[int, int | None]] = []
    path = resolve_model(
        model_http.url("/m.onnx"),
        cache_dir=tmp_path,
        sha256=DIGEST,
        progress=lambda p: seen.append((p.done, p.total)),
    )
    assert path.read_bytes() == PAYLOAD
    assert "Range" not in model_http.requests[0]
    assert model_http.requests[1]["Range"] == f"bytes={len(PAYLOAD) // 2}-"
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)  # never goes backwards


@pytest.mark.usefixtures("no_backoff")
def test_download_that_keeps_failing_gives_up_naming_the_attempts(model_http, tmp_path: Path):
    model_http.files["/m.onnx"] = PAYLOAD
    model_http.truncate = True
    with pytest.raises(ModelLoadError, match="failed after 5 attempts: truncated"):
        resolve_model(model_http.url("/m.onnx"), cache_dir=tmp_path)
    assert len(model_http.requests) == 5
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_shared_cache_hit_skips_download_and_rehash(model_http, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    url = model_http.url("/m.onnx")
    entry = cache_entry(url, shared, DIGEST)
    entry.parent.mkdir(parents=True)
    # Not the pinned content: a hit is trusted (verified at fill time), so no re-hash reads it.
    entry.write_bytes(b"verified when the cache was filled")
    got = resolve_model(url, cache_dir=tmp_path / "own", sha256=DIGEST, shared_cache_dir=shared)
    assert got == entry and model_http.requests == []


def test_shared_cache_miss_downloads_into_the_pods_own_cache(model_http, tmp_path: Path) -> None:
    model_http.files["/m.onnx"] = PAYLOAD
    shared = tmp_path / "shared"
    shared.mkdir()
    got = resolve_model(
        model_http.url("/m.onnx"),
        cache_dir=tmp_path / "own",
        sha256=DIGEST,
        shared_cache_dir=shared,
    )
    assert got.is_relative_to(tmp_path / "own") and got.read_bytes() == PAYLOAD
    assert len(model_http.requests) == 1 and not any(shared.iterdir())


def test_a_callable_url_is_asked_again_for_every_attempt(
    model_http, tmp_path: Path, no_backoff: None
) -> None:
    # Temporary credentials may have been renewed between attempts: each signs anew.
    model_http.files["/m.onnx"] = PAYLOAD
    model_http.cut_times = 1
    asked: list[str] = []

    def url() -> str:
        asked.append(model_http.url(f"/m.onnx?attempt={len(asked) + 1}"))
        return asked[-1]

    download(url, tmp_path / "m.onnx", shown="m", check=lambda _: None)
    assert (tmp_path / "m.onnx").read_bytes() == PAYLOAD
    assert [u.rpartition("=")[2] for u in asked] == ["1", "2"]
