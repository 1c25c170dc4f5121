"""Shadow mirroring: the stable runtime copies a share of answered requests to a candidate.

End to end through two real runtimes on loopback (stable and candidate), plus the Mirror
alone for the queue's edge cases, where the target is a socket that never answers.
"""

import asyncio
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from kinfer_runtime.metrics import RuntimeMetrics
from kinfer_runtime.mirror import SHADOW_HEADER, Mirror, MirrorConfig, read_config

INFER = "/v2/models/demo/infer"


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _count(live, name: str, **labels: str) -> float:
    return live.metric(name, **labels) or 0.0


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listening socket that accepts and never answers: every mirror times out."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def _write(path: Path, **config: object) -> None:
    # As the kubelet does: a new file swapped in, never an edit in place.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config))
    tmp.replace(path)


# --- through two real runtimes ---------------------------------------------------------------


def test_a_configured_share_of_answered_requests_reaches_the_candidate_as_shadow(
    tmp_path, demo_dir, make_settings, serve, oip, images
) -> None:
    config = tmp_path / "mirror.json"
    with serve(make_settings(demo_dir / "model.onnx", revision="cand")) as candidate:
        _write(config, target=candidate.classified_url, percent=25, revision="cand")
        stable_settings = make_settings(
            demo_dir / "model.onnx", revision="stab", shadow_config=config
        )
        with serve(stable_settings) as stable:
            body, headers = oip.image_body(images[:1])
            for _ in range(40):
                assert httpx.post(f"{stable.url}{INFER}", content=body, headers=headers).is_success
            shadow = {"protocol": "rest", "source": "shadow", "code": "200"}
            _wait(
                lambda: _count(candidate, "kinfer_requests_total", **shadow) == 10,
                10,
                "10 mirrored requests at the candidate",
            )
            time.sleep(0.3)  # nothing more arrives
            assert _count(candidate, "kinfer_requests_total", **shadow) == 10
            live = {"protocol": "rest", "source": "live", "code": "200"}
            assert _count(candidate, "kinfer_requests_total", **live) == 0
            assert _count(stable, "kinfer_requests_total", **live) == 40
            assert _count(stable, "kinfer_shadow_requests_total", result="mirrored") == 10
            # The candidate does not mirror what was mirrored to it.
            assert _count(candidate, "kinfer_shadow_requests_total", result="mirrored") == 0


def test_a_faulty_candidate_never_changes_the_stable_answer(
    tmp_path, demo_dir, variant_dir, make_settings, serve, oip, images
) -> None:
    config = tmp_path / "mirror.json"
    with serve(make_settings(variant_dir("faulty") / "model.onnx", revision="bad")) as candidate:
        _write(config, target=candidate.classified_url, percent=100)
        with serve(make_settings(demo_dir / "model.onnx", shadow_config=config)) as stable:
            body, headers = oip.image_body(images[:1])
            answers = [
                httpx.post(f"{stable.url}{INFER}", content=body, headers=headers) for _ in range(10)
            ]
            assert [a.status_code for a in answers] == [200] * 10
            first = oip.outputs(answers[0])["logits"]
            assert all(np.array_equal(oip.outputs(a)["logits"], first) for a in answers)
            failed = {"protocol": "rest", "source": "shadow", "code": "500"}
            _wait(
                lambda: _count(candidate, "kinfer_requests_total", **failed) == 10,
                10,
                "the candidate's 10 shadow failures",
            )


def test_rewriting_the_config_file_turns_mirroring_off_without_a_restart(
    tmp_path, demo_dir, make_settings, serve, oip, images
) -> None:
    config = tmp_path / "mirror.json"
    with serve(make_settings(demo_dir / "model.onnx", revision="cand")) as candidate:
        _write(config, target=candidate.classified_url, percent=100)
        with serve(make_settings(demo_dir / "model.onnx", shadow_config=config)) as stable:
            body, headers = oip.image_body(images[:1])
            url = f"{stable.url}{INFER}"
            assert httpx.post(url, content=body, headers=headers).is_success
            shadow = {"protocol": "rest", "source": "shadow", "code": "200"}
            _wait(lambda: _count(candidate, "kinfer_requests_total", **shadow) == 1, 10, "mirror")
            _write(config)  # {}: off
            _wait(lambda: stable.service.mirror.config is None, 10, "the mirror to turn off")
            for _ in range(5):
                assert httpx.post(url, content=body, headers=headers).is_success
            time.sleep(0.3)
            assert _count(candidate, "kinfer_requests_total", **shadow) == 1


# --- the mirror alone ------------------------------------------------------------------------


def _sample(metrics: RuntimeMetrics, name: str, **labels: str) -> float:
    base = {"model": "demo", "version": "1", "revision": "stab"}
    return metrics.registry.get_sample_value(name, base | labels) or 0.0


async def _configured(port: int, **config: object) -> tuple[Mirror, RuntimeMetrics]:
    metrics = RuntimeMetrics("demo", "1", "stab")
    mirror = Mirror(metrics, "stab")
    values: dict[str, object] = {"host": "127.0.0.1", "port": port, "percent": 100.0}
    await mirror.configure(MirrorConfig(**(values | config)))  # type: ignore[arg-type]
    return mirror, metrics


def test_sampling_takes_exactly_the_configured_share(silent_port: int) -> None:
    async def run() -> int:
        mirror, _ = await _configured(silent_port, percent=20.0, max_queue=1000)
        for _ in range(100):  # no await between offers: the workers take nothing yet
            mirror.offer(INFER, [], b"{}")
        queued = mirror._queue.qsize() if mirror._queue else -1
        await mirror.stop()
        return queued

    assert asyncio.run(run()) == 20


def test_a_full_queue_drops_and_counts_and_never_waits(silent_port: int) -> None:
    async def run() -> tuple[float, float]:
        mirror, metrics = await _configured(
            silent_port, max_queue=2, max_concurrency=1, timeout_s=30.0
        )
        started = time.perf_counter()
        for _ in range(10):
            mirror.offer(INFER, [(b"content-type", b"application/json")], b"{}")
        spent = time.perf_counter() - started
        await mirror.stop()
        return spent, _sample(metrics, "kinfer_shadow_requests_total", result="dropped")

    spent, dropped = asyncio.run(run())
    assert dropped == 8
    assert spent < 0.05  # ten offers against a target that never answers


def test_the_queue_is_bounded_by_bytes_as_well_as_by_count(silent_port: int) -> None:
    async def run() -> tuple[float, int, float]:
        mirror, metrics = await _configured(
            silent_port, max_queue=1000, max_concurrency=2, max_queue_bytes=10_000, timeout_s=30.0
        )
        body = bytes(4_000)
        for _ in range(10):
            mirror.offer(INFER, [], body)
        await asyncio.sleep(0.1)  # two workers take a copy each and wait on the silent target
        held = mirror._held_bytes
        for _ in range(10):
            mirror.offer(INFER, [], body)
        dropped = _sample(metrics, "kinfer_shadow_requests_total", result="dropped")
        await mirror.stop()
        return dropped, held, _sample(metrics, "kinfer_shadow_queue_depth")

    dropped, held, depth = asyncio.run(run())
    assert held == 8_000  # the copies being sent still count
    assert dropped == 18  # only two 4 kB copies fit in 10 kB, queued or in flight
    assert depth == 0


def test_the_byte_bound_is_read_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "mirror.json"
    _write(path, target="http://10.0.0.7:8080/", percent=10, maxQueueBytes=1234)
    config = read_config(path)
    assert config is not None and config.max_queue_bytes == 1234


def test_a_target_that_does_not_answer_in_time_counts_as_failed(silent_port: int) -> None:
    async def run() -> float:
        mirror, metrics = await _configured(silent_port, timeout_s=0.2)
        mirror.offer(INFER, [], b"{}")
        for _ in range(100):
            await asyncio.sleep(0.02)
            if _sample(metrics, "kinfer_shadow_requests_total", result="failed"):
                break
        await mirror.stop()
        return _sample(metrics, "kinfer_shadow_requests_total", result="failed")

    assert asyncio.run(run()) == 1


def test_only_the_decoding_headers_and_the_shadow_mark_are_forwarded(silent_port: int) -> None:
    async def run() -> dict[str, str]:
        mirror, _ = await _configured(silent_port)
        raw = [
            (b"content-type", b"application/octet-stream"),
            (b"inference-header-content-length", b"42"),
            (b"authorization", b"Bearer secret"),
        ]
        mirror.offer(INFER, raw, b"{}")
        assert mirror._queue is not None
        headers = mirror._queue.get_nowait().headers
        await mirror.stop()
        return headers

    assert asyncio.run(run()) == {
        "content-type": "application/octet-stream",
        "inference-header-content-length": "42",
        SHADOW_HEADER: "stab",
    }


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{}",
        "not json",
        '{"percent": 10}',
        '{"target": "http://x:1", "percent": 0}',
        '{"target": "https://x:1", "percent": 10}',
        "[1]",
    ],
)
def test_an_empty_or_unusable_config_means_off(tmp_path: Path, content: str) -> None:
    path = tmp_path / "mirror.json"
    path.write_text(content)
    assert read_config(path) is None


def test_a_missing_config_means_off_and_a_full_one_is_read(tmp_path: Path) -> None:
    path = tmp_path / "mirror.json"
    assert read_config(path) is None
    _write(path, target="http://10.0.0.7:8080/", percent=150, timeoutSeconds=2, maxQueue=8)
    config = read_config(path)
    assert config == MirrorConfig(
        host="10.0.0.7", port=8080, percent=100.0, timeout_s=2.0, max_queue=8
    )


def test_the_candidate_itself_does_not_mirror_to_its_own_revision(tmp_path: Path) -> None:
    path = tmp_path / "mirror.json"
    _write(path, target="http://127.0.0.1:9", percent=100, revision="cand")

    async def run() -> tuple[MirrorConfig | None, MirrorConfig | None]:
        candidate = Mirror(RuntimeMetrics("demo", "2", "cand"), "cand", path)
        stable = Mirror(RuntimeMetrics("demo", "1", "stab"), "stab", path)
        await candidate.reload()
        await stable.reload()
        configs = candidate.config, stable.config
        await stable.stop()
        return configs

    on_candidate, on_stable = asyncio.run(run())
    assert on_candidate is None
    assert on_stable is not None and on_stable.revision == "cand"
