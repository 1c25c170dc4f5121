"""s3:// with a web-identity token: STS AssumeRoleWithWebIdentity, then SigV4 with the
temporary credentials, against an in-process fake STS and a fake S3 that checks signatures."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kinfer_runtime import cachefill
from kinfer_runtime._sts import (
    WebIdentity,
    WebIdentityCredentials,
    assume_role,
    web_identity_from_env,
)
from kinfer_runtime.config import Settings, object_store
from kinfer_runtime.errors import ModelLoadError
from kinfer_runtime.sources import ObjectStore, resolve_model

ROLE = "arn:aws:iam::111122223333:role/kinfer-models"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.service-account.signature"
NS = "https://sts.amazonaws.com/doc/2011-06-15/"


@dataclass
class FakeAws:
    """STS hands out numbered session credentials for TOKEN; S3 serves `files` to requests
    signed (SigV4, query string) with the current ones."""

    port: int = 0
    token: str = TOKEN
    lifetime: timedelta = timedelta(hours=1)
    sts_calls: list[dict[str, str]] = field(default_factory=list)
    s3_refusals: list[str] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    sts_answer: bytes | None = None  # replaces the answer when set
    secrets: dict[str, tuple[str, str]] = field(default_factory=dict)  # key id -> secret, token

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def assume(self, form: dict[str, str]) -> tuple[int, bytes]:
        self.sts_calls.append(form)
        if self.sts_answer is not None:
            return 200, self.sts_answer
        if form.get("Action") != "AssumeRoleWithWebIdentity" or form.get("RoleArn") != ROLE:
            return 400, _error("ValidationError", "unexpected request")
        if form.get("WebIdentityToken") != self.token:
            return 400, _error("InvalidIdentityToken", "the token is not trusted")
        n = len(self.sts_calls)
        key_id, secret, session = f"ASIA{n:016d}", f"secret-{n}/+=", f"session-{n}"
        self.secrets[key_id] = (secret, session)
        expires = (datetime.now(UTC) + self.lifetime).strftime("%Y-%m-%dT%H:%M:%SZ")
        return 200, (
            f'<AssumeRoleWithWebIdentityResponse xmlns="{NS}"><AssumeRoleWithWebIdentityResult>'
            f"<Credentials><SessionToken>{session}</SessionToken>"
            f"<SecretAccessKey>{secret}</SecretAccessKey><Expiration>{expires}</Expiration>"
            f"<AccessKeyId>{key_id}</AccessKeyId></Credentials>"
            "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
        ).encode()

    def verify(self, path: str, query: str, host: str) -> str | None:
        """Why S3 refuses the request, or None: recomputes the signature independently."""
        params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        key_id, date, region, service, _ = params.get("X-Amz-Credential", "////").split("/")
        if key_id not in self.secrets:
            return "InvalidAccessKeyId"
        secret, session = self.secrets[key_id]
        if params.get("X-Amz-Security-Token") != session:
            return "InvalidToken"
        given = params.pop("X-Amz-Signature", "")
        canonical_query = "&".join(
            f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
            for k, v in sorted(params.items())
        )
        request = f"GET\n{path}\n{canonical_query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD"
        scope = f"{date}/{region}/{service}/aws4_request"
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256",
                params["X-Amz-Date"],
                scope,
                hashlib.sha256(request.encode()).hexdigest(),
            ]
        )
        key = f"AWS4{secret}".encode()
        for part in (date, region, service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        wanted = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        return None if hmac.compare_digest(wanted, given) else "SignatureDoesNotMatch"


def _error(code: str, message: str) -> bytes:
    return (
        f'<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{message}</Message></Error><RequestId>1</RequestId></ErrorResponse>"
    ).encode()


@pytest.fixture
def aws() -> Iterator[FakeAws]:
    fake = FakeAws()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # STS
            length = int(self.headers.get("Content-Length", "0"))
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            self._send(*fake.assume(form))

        def do_GET(self) -> None:  # S3, path-style
            parts = urllib.parse.urlsplit(self.path)
            refusal = fake.verify(parts.path, parts.query, self.headers["Host"])
            if refusal is not None:
                fake.s3_refusals.append(refusal)
                self._send(403, f"<Error><Code>{refusal}</Code></Error>".encode())
            elif parts.path in fake.files:
                self._send(200, fake.files[parts.path])
            else:
                self._send(404, b"<Error><Code>NoSuchKey</Code></Error>")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


def _settings(**fields: str) -> Settings:
    return Settings(**{"model_uri": "s3://models/m.onnx", "model_name": "m", **fields})


def _env(aws: FakeAws, token_file: Path) -> dict[str, str]:
    return {
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
        "AWS_ROLE_ARN": ROLE,
        "AWS_ROLE_SESSION_NAME": "pod-1",
        "AWS_ENDPOINT_URL_STS": aws.url,
    }


def test_s3_download_signs_with_credentials_assumed_from_the_token(
    aws: FakeAws, token_file: Path, tmp_path: Path
) -> None:
    aws.files["/models/v1/model.onnx"] = b"onnx bytes"
    settings = _settings(model_uri="s3://models/v1/model.onnx", model_endpoint=aws.url)
    store = object_store(settings, _env(aws, token_file))
    path = resolve_model(settings.model_uri, cache_dir=tmp_path / "c", object_store=store)
    assert path.read_bytes() == b"onnx bytes"
    assert aws.s3_refusals == []
    [call] = aws.sts_calls
    assert call["RoleArn"] == ROLE and call["WebIdentityToken"] == TOKEN
    assert call["RoleSessionName"] == "pod-1"


def test_the_fake_s3_refuses_a_signature_made_with_another_secret(
    aws: FakeAws, token_file: Path, tmp_path: Path
) -> None:
    aws.files["/models/m.onnx"] = b"x"
    source = WebIdentityCredentials(web_identity_from_env(_env(aws, token_file), "us-east-1"))  # type: ignore[arg-type]
    creds = source.get()
    aws.secrets[creds.access_key_id] = ("another secret", creds.session_token or "")
    store = ObjectStore(aws.url, web_identity=source)
    with pytest.raises(ModelLoadError, match="HTTP 403"):
        resolve_model("s3://models/m.onnx", cache_dir=tmp_path, object_store=store)
    assert aws.s3_refusals == ["SignatureDoesNotMatch"]


def test_credentials_are_assumed_again_shortly_before_they_expire(
    aws: FakeAws, token_file: Path
) -> None:
    now = [datetime.now(UTC)]
    identity = WebIdentity(ROLE, token_file, aws.url + "/")
    source = WebIdentityCredentials(identity, now=lambda: now[0])
    first = source.get()
    assert source.get() == first and len(aws.sts_calls) == 1
    # The kubelet rotates the token file; the next assume reads the new one.
    aws.token = "rotated"
    token_file.write_text("rotated")
    now[0] += timedelta(minutes=56)
    second = source.get()
    assert second != first and second.session_token == "session-2"
    assert [c["WebIdentityToken"] for c in aws.sts_calls] == [TOKEN, "rotated"]


def test_a_refused_token_is_a_load_error_naming_the_sts_error(
    aws: FakeAws, token_file: Path, tmp_path: Path
) -> None:
    aws.token = "something else"
    store = object_store(_settings(model_endpoint=aws.url), _env(aws, token_file))
    with pytest.raises(ModelLoadError, match=r"HTTP 400 InvalidIdentityToken: the token is not"):
        resolve_model("s3://models/m.onnx", cache_dir=tmp_path, object_store=store)


def test_an_oversized_or_incomplete_sts_answer_is_refused(aws: FakeAws, token_file: Path) -> None:
    identity = WebIdentity(ROLE, token_file, aws.url + "/")
    aws.sts_answer = b"<x>" + b" " * 70_000 + b"</x>"
    with pytest.raises(ModelLoadError, match="over 65536 bytes"):
        assume_role(identity)
    aws.sts_answer = f'<AssumeRoleWithWebIdentityResponse xmlns="{NS}"/>'.encode()
    with pytest.raises(ModelLoadError, match="no Credentials"):
        assume_role(identity)


def test_an_unreadable_or_empty_token_file_names_the_variable(aws: FakeAws, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"AWS_WEB_IDENTITY_TOKEN_FILE .*cannot read"):
        assume_role(WebIdentity(ROLE, tmp_path / "missing", aws.url + "/"))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ModelLoadError, match="is empty"):
        assume_role(WebIdentity(ROLE, tmp_path / "empty", aws.url + "/"))
    assert aws.sts_calls == []


def test_web_identity_needs_both_variables_and_defaults_to_the_regional_sts() -> None:
    assert web_identity_from_env({"AWS_ROLE_ARN": ROLE}, "eu-west-1") is None
    assert web_identity_from_env({"AWS_WEB_IDENTITY_TOKEN_FILE": "/t"}, "eu-west-1") is None
    both = {"AWS_ROLE_ARN": ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE": "/t"}
    identity = web_identity_from_env(both, "eu-west-1")
    assert identity is not None and identity.sts_endpoint == "https://sts.eu-west-1.amazonaws.com/"
    assert identity.session_name.startswith("kinfer-")
    regional = web_identity_from_env({**both, "AWS_REGION": "ap-south-1"}, "eu-west-1")
    assert regional is not None and "ap-south-1" in regional.sts_endpoint


def test_static_keys_win_over_the_web_identity(token_file: Path) -> None:
    env = {"AWS_ROLE_ARN": ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file)}
    keyed = object_store(
        _settings(model_access_key_id="AKIA", model_secret_access_key="s"), environ=env
    )
    assert keyed.credentials is not None and keyed.web_identity is None
    assert object_store(_settings(), environ=env).web_identity is not None
    assert object_store(_settings(), environ={}).web_identity is None


def test_the_cache_fill_job_uses_the_web_identity_too(token_file: Path) -> None:
    env = {"AWS_ROLE_ARN": ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file)}
    store = cachefill._object_store(env)
    assert store.credentials is None and store.web_identity is not None
    assert store.web_identity.identity.role_arn == ROLE


def test_temporary_credentials_never_show_in_repr(aws: FakeAws, token_file: Path) -> None:
    creds = WebIdentityCredentials(WebIdentity(ROLE, token_file, aws.url + "/")).get()
    assert "secret-1" not in repr(creds) and "session-1" not in repr(creds)
