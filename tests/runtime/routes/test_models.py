import httpx
import pytest


@pytest.mark.parametrize("path", ["/v2/models/demo", "/v2/models/demo/versions/1"])
def test_model_metadata_comes_from_the_model_file(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.json() == {
        "name": "demo",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 32, 32]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
    }


@pytest.mark.parametrize("path", ["/v2/models/demo/ready", "/v2/models/demo/versions/1/ready"])
def test_model_ready(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.json() == {"name": "demo", "ready": True}


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/v2/models/other", "model 'other' is not served here"),
        ("/v2/models/demo/versions/2", "model 'demo' has no version '2'"),
        ("/v2/models/other/ready", "model 'other' is not served here"),
        ("/v2/models/demo/versions/9/ready", "model 'demo' has no version '9'"),
    ],
)
def test_unknown_model_or_version_is_404_with_reason(
    client: httpx.Client, path: str, reason: str
) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json() == {"error": reason}
