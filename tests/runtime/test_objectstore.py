"""s3:// and gs:// become presigned HTTPS URLs (AWS Signature Version 4, query string);
azure:// becomes a blob URL with a service SAS."""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kinfer_runtime._objectstore import (
    ObjectStoreCredentials,
    azure_sas_url,
    presigned_url,
    sign_url,
)
from kinfer_runtime.errors import ModelLoadError
from kinfer_runtime.sources import ObjectStore, resolve_model

# AWS's own example of a presigned GET (S3 API reference, "Authenticating Requests: Using
# Query Parameters"): same keys, date and expiry must give the published signature.
AWS_EXAMPLE_KEYS = ObjectStoreCredentials(
    "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
)
AWS_EXAMPLE_SIGNATURE = "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"


def test_signature_matches_the_aws_documentation_example() -> None:
    url = sign_url(
        "https://examplebucket.s3.amazonaws.com/test.txt",
        AWS_EXAMPLE_KEYS,
        region="us-east-1",
        now=datetime(2013, 5, 24, tzinfo=UTC),
        expires_s=86400,
    )
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["X-Amz-Signature"] == [AWS_EXAMPLE_SIGNATURE]
    assert query["X-Amz-Credential"] == ["AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"]


def test_custom_endpoint_is_path_style_and_aws_is_virtual_hosted() -> None:
    assert presigned_url("s3://models/a b/model.onnx", endpoint="http://10.0.0.1:9000/") == (
        "http://10.0.0.1:9000/models/a%20b/model.onnx"
    )
    assert presigned_url("s3://models/m.onnx", region="eu-west-1") == (
        "https://models.s3.eu-west-1.amazonaws.com/m.onnx"
    )
    assert presigned_url("gs://models/m.onnx") == "https://storage.googleapis.com/models/m.onnx"


def test_gcs_hmac_keys_sign_for_region_auto() -> None:
    url = presigned_url("gs://models/m.onnx", credentials=AWS_EXAMPLE_KEYS)
    credential = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["X-Amz-Credential"]
    assert credential[0].split("/")[2] == "auto"


def test_a_uri_without_a_key_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="must be s3://<bucket>/<key>"):
        resolve_model("s3://models", cache_dir=tmp_path, object_store=ObjectStore())


def test_s3_download_goes_to_the_endpoint_signed(model_http, tmp_path: Path) -> None:
    model_http.files["/models/v1/model.onnx"] = b"onnx bytes"
    store = ObjectStore(f"http://127.0.0.1:{model_http.port}", "us-east-1", AWS_EXAMPLE_KEYS)
    path = resolve_model("s3://models/v1/model.onnx", cache_dir=tmp_path, object_store=store)
    assert path.read_bytes() == b"onnx bytes" and path.name == "model.onnx"
    assert len(model_http.requests) == 1


def test_credentials_never_show_in_repr() -> None:
    assert "wJalr" not in repr(AWS_EXAMPLE_KEYS)


# Azurite's well-known development account (published in Azure's docs on Azurite). Microsoft
# publishes no signed SAS example; the expected value was computed with azure-storage-blob
# 12.31.1 (BlobSharedAccessSignature.generate_blob at x_ms_version 2022-11-02, permission r,
# the same expiry), and Azurite verifies the same string-to-sign in the e2e suite.
AZURITE_KEYS = ObjectStoreCredentials(
    "devstoreaccount1",
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
)
AZURE_SDK_SAS = {
    "sv": ["2022-11-02"],
    "sr": ["b"],
    "sp": ["r"],
    "se": ["2013-05-31T00:00:00Z"],
    "sig": ["REpueCXs7f4vwQ9sDm0T4iXGDfQxcl1tx4szzpcxR0w="],
}


def test_azure_sas_matches_the_azure_sdk() -> None:
    url = azure_sas_url(
        "https://devstoreaccount1.blob.core.windows.net/models/demo/a%20b.onnx",
        AZURITE_KEYS,
        container="models",
        blob="demo/a b.onnx",
        now=datetime(2013, 5, 24, tzinfo=UTC),
    )
    parts = urllib.parse.urlsplit(url)
    assert parts.path == "/models/demo/a%20b.onnx"
    assert urllib.parse.parse_qs(parts.query) == AZURE_SDK_SAS


def test_azure_sas_changes_with_the_key() -> None:
    other = ObjectStoreCredentials("devstoreaccount1", "a2V5")
    urls = [
        azure_sas_url("http://h/c/b", keys, container="c", blob="b", now=datetime(2013, 5, 24))
        for keys in (AZURITE_KEYS, other)
    ]
    assert urls[0] != urls[1]


def test_azure_defaults_to_the_accounts_blob_host() -> None:
    url = presigned_url("azure://models/m.onnx", credentials=AZURITE_KEYS)
    assert url.startswith("https://devstoreaccount1.blob.core.windows.net/models/m.onnx?sv=")
    assert presigned_url("azure://models/m.onnx", endpoint="http://10.0.0.1:10000/acct/") == (
        "http://10.0.0.1:10000/acct/models/m.onnx"
    )


def test_azure_without_account_or_endpoint_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="needs an endpoint or credentials"):
        resolve_model("azure://models/m.onnx", cache_dir=tmp_path, object_store=ObjectStore())


def test_azure_key_must_be_base64(tmp_path: Path) -> None:
    store = ObjectStore(None, "us-east-1", ObjectStoreCredentials("acct", "not base64!"))
    with pytest.raises(ModelLoadError, match="base64"):
        resolve_model("azure://models/m.onnx", cache_dir=tmp_path, object_store=store)


def test_azure_download_goes_to_the_endpoint_with_a_sas(model_http, tmp_path: Path) -> None:
    model_http.files["/devstoreaccount1/models/v1/model.onnx"] = b"onnx bytes"
    endpoint = f"http://127.0.0.1:{model_http.port}/devstoreaccount1"
    store = ObjectStore(endpoint, "us-east-1", AZURITE_KEYS)
    path = resolve_model("azure://models/v1/model.onnx", cache_dir=tmp_path, object_store=store)
    assert path.read_bytes() == b"onnx bytes" and path.name == "model.onnx"
    assert len(model_http.requests) == 1
