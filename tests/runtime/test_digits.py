"""A real model on real images, no download: the digits CNN (e2e/digits.py, trained here in
seconds) served as a bundle archive by the real runtime process; PNG POSTs to .../predict give
the labels the same handler and model give in process, and at least 95% of them are right."""

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from digits import DigitsArtifacts, build


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> DigitsArtifacts:
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    return build(tmp_path_factory.mktemp("digits"))


@pytest.fixture
def served(server_process, digits: DigitsArtifacts, tmp_path: Path) -> Iterator[str]:
    server = server_process(
        {
            "KINFER_MODEL_URI": f"file://{digits.tar_gz}",
            "KINFER_MODEL_NAME": "digits",
            "KINFER_MODEL_CACHE_DIR": str(tmp_path / "cache"),
            "KINFER_HANDLER_THREADS": "2",
        }
    )
    server.wait_ready(timeout_s=120)
    yield server.url


@pytest.mark.timeout(900)  # the module fixture trains the model first: slow on a busy machine
def test_served_png_labels_match_in_process_and_the_truth(
    digits: DigitsArtifacts, served: str
) -> None:
    names = sorted(digits.truth)

    def label(name: str) -> str:
        response = httpx.post(
            f"{served}/v2/models/digits/predict",
            content=(digits.images / name).read_bytes(),
            headers={"Content-Type": "image/png"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        (output,) = [o for o in response.json()["outputs"] if o["name"] == "label"]
        assert output["shape"] == [1, 3]
        return str(output["data"][0])

    with ThreadPoolExecutor(8) as pool:
        served_labels = dict(zip(names, pool.map(label, names), strict=True))
    in_process = digits.summary["in_process_labels"]
    assert served_labels == in_process  # the same accuracy as in process, label for label
    correct = sum(served_labels[n] == digits.truth[n] for n in names)
    accuracy = correct / len(names)
    assert len(names) == 360 and accuracy >= 0.95, accuracy
    summary = json.loads((digits.root / "summary.json").read_text())
    assert summary["png_accuracy_in_process"] == accuracy
