"""Settings for `kinfer-runtime serve`: command-line flags, each defaulting to a KINFER_* variable.

The operator configures the runtime through the environment only, so every flag has a variable;
the model source's Authorization header is environment-only because argv is world-readable.
"""

import argparse
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TypeVar, cast, get_args

from kinfer_runtime._sts import credentials_from_env
from kinfer_runtime.backends import FORMATS, Device, ModelFormat, TorchDtype
from kinfer_runtime.sources import ObjectStore, ObjectStoreCredentials

__all__ = [
    "ENV",
    "BatchPadding",
    "Settings",
    "add_serve_arguments",
    "object_store",
    "settings_from_args",
]

BatchPadding = Literal["auto", "always", "never"]

# Flag destination -> environment variable. Names are part of the operator contract.
ENV: Final = {
    "model_uri": "KINFER_MODEL_URI",
    "model_name": "KINFER_MODEL_NAME",
    "model_version": "KINFER_MODEL_VERSION",
    "model_format": "KINFER_MODEL_FORMAT",
    "model_sha256": "KINFER_MODEL_SHA256",
    "model_cache_dir": "KINFER_MODEL_CACHE_DIR",
    "model_auth_header": "KINFER_MODEL_AUTH_HEADER",
    "shared_cache_dir": "KINFER_SHARED_CACHE_DIR",
    "model_endpoint": "KINFER_MODEL_ENDPOINT",
    "model_region": "KINFER_MODEL_REGION",
    "model_access_key_id": "KINFER_MODEL_ACCESS_KEY_ID",
    "model_secret_access_key": "KINFER_MODEL_SECRET_ACCESS_KEY",
    "host": "KINFER_HOST",
    "port": "KINFER_PORT",
    "grpc_port": "KINFER_GRPC_PORT",
    "metrics_port": "KINFER_METRICS_PORT",
    "classified_port": "KINFER_CLASSIFIED_PORT",
    "max_batch_size": "KINFER_MAX_BATCH_SIZE",
    "max_queue_delay_us": "KINFER_MAX_QUEUE_DELAY_US",
    "max_queue_size": "KINFER_MAX_QUEUE_SIZE",
    "request_timeout_s": "KINFER_REQUEST_TIMEOUT_S",
    "priority_levels": "KINFER_PRIORITY_LEVELS",
    "default_priority": "KINFER_DEFAULT_PRIORITY",
    "lower_priority_max_batch_size": "KINFER_LOWER_PRIORITY_MAX_BATCH_SIZE",
    "max_body_bytes": "KINFER_MAX_BODY_BYTES",
    "max_inflight_bytes": "KINFER_MAX_INFLIGHT_BYTES",
    "grpc_max_concurrent_rpcs": "KINFER_GRPC_MAX_CONCURRENT_RPCS",
    "grpc_max_connection_age_s": "KINFER_GRPC_MAX_CONNECTION_AGE_S",
    "grpc_max_connection_age_grace_s": "KINFER_GRPC_MAX_CONNECTION_AGE_GRACE_S",
    "device": "KINFER_DEVICE",
    "torch_dtype": "KINFER_TORCH_DTYPE",
    "threads": "KINFER_THREADS",
    "batch_padding": "KINFER_BATCH_PADDING",
    "handler": "KINFER_HANDLER",
    "handler_threads": "KINFER_HANDLER_THREADS",
    "revision": "KINFER_REVISION",
    "shadow_config": "KINFER_SHADOW_CONFIG",
    "drain_delay_s": "KINFER_DRAIN_DELAY_S",
    "warmup_window_s": "KINFER_WARMUP_WINDOW_S",
    "termination_log": "KINFER_TERMINATION_LOG",
    "log_level": "KINFER_LOG_LEVEL",
    "access_log": "KINFER_ACCESS_LOG",
    "response_cache_bytes": "KINFER_RESPONSE_CACHE_BYTES",
}


@dataclass(frozen=True)
class Settings:
    model_uri: str
    model_name: str
    model_version: str = "1"
    model_format: ModelFormat | None = None  # None: from the file extension
    model_sha256: str | None = None
    model_cache_dir: Path = Path(tempfile.gettempdir()) / "kinfer-models"
    model_auth_header: str | None = None
    # The operator's model cache, mounted read-only: looked up before any download.
    shared_cache_dir: Path | None = None
    # s3://, gs:// and azure:// sources: a custom endpoint, the region, and the key pair (for
    # azure://, the storage account and its key; environment-only, like the Authorization
    # header).
    model_endpoint: str | None = None
    model_region: str = "us-east-1"
    model_access_key_id: str | None = None
    model_secret_access_key: str | None = None
    host: str = "0.0.0.0"
    port: int = 8080
    grpc_port: int = 8081  # 0: no gRPC endpoint
    metrics_port: int = 9090  # 0: /metrics on the main port only
    # A second listener for the same HTTP API, for the traffic kinfer sends itself: only here
    # do the shadow and pinned markers count (routes.inference). 0: no such listener.
    classified_port: int = 8090
    max_batch_size: int = 16
    max_queue_delay_us: int = 1000
    max_queue_size: int = 256
    request_timeout_s: float = 30.0
    # Triton's request priorities: levels 1 (highest) .. priority_levels, one queue each; a
    # request without a priority is queued at default_priority.
    priority_levels: int = 1
    default_priority: int = 1
    # Most rows in a batch holding no level-1 request, which bounds a level-1 request's wait
    # behind lower-priority work. 0: 1 on a CPU (where every row costs as much as a request
    # alone), max_batch_size on a GPU (where the rows of a batch are nearly free).
    lower_priority_max_batch_size: int = 0
    max_body_bytes: int = 64 * 1024 * 1024
    # Memory that request bodies in flight may hold, REST and gRPC together (JSON counted at
    # several times its size); over it a request is refused unread (503, RESOURCE_EXHAUSTED).
    # 0: a quarter of the container's memory limit, or 256 MiB without one.
    max_inflight_bytes: int = 0
    # gRPC calls served at once; more are refused (RESOURCE_EXHAUSTED) before their message is
    # read. grpcio reads a message whole before the budget can be charged, so gRPC messages
    # are also limited to max_inflight_bytes / this (and to max_body_bytes).
    grpc_max_concurrent_rpcs: int = 64
    # A gRPC connection older than this gets GOAWAY (grpcio adds +-10% jitter), so a client
    # holding one channel reconnects, through the Service, to whichever pod it picks then:
    # long-lived channels follow the replica ratio. 0: connections live as long as clients keep
    # them. Calls in flight get the grace period to finish before the connection is closed
    # (None: the request timeout, which no call outlives).
    grpc_max_connection_age_s: float = 0.0
    grpc_max_connection_age_grace_s: float | None = None
    device: Device = "auto"
    torch_dtype: TorchDtype = "fp32"
    threads: int | None = None  # None: the container's CPU limit
    batch_padding: BatchPadding = "auto"
    # A handler from the image (package.module:Class) for a model without a bundle manifest
    # naming one; the manifest's handler wins.
    handler: str | None = None
    handler_threads: int = 4  # the thread pool running handlers' preprocess/postprocess
    revision: str = ""
    # JSON file (the operator's mounted shadow ConfigMap) saying whether to mirror answered
    # requests to a candidate revision; polled, so mirroring turns on and off without a restart.
    shadow_config: Path | None = None
    # After SIGTERM: how long to keep serving (while reporting not-ready) so that Kubernetes
    # can take the pod out of its Service before the listener closes.
    drain_delay_s: float = 5.0
    # The first seconds after Ready, whose request latencies are recorded in
    # kinfer_warmup_request_duration_seconds instead of kinfer_request_duration_seconds, so
    # that canary analysis leaves a pod's warm-up (JIT, caches) out (spec.rollout.analysis).
    warmup_window_s: float = 0.0
    termination_log: Path | None = Path("/dev/termination-log")
    log_level: str = "info"
    access_log: bool = False
    # The response cache's bound in bytes (dataplane.response_cache); 0: no cache. Set by the
    # operator only for models marked deterministic.
    response_cache_bytes: int = 0

    def __repr__(self) -> str:
        # Never print the credential.
        auth = "<set>" if self.model_auth_header or self.model_secret_access_key else None
        return f"Settings(uri={self.model_uri!r}, name={self.model_name!r}, auth={auth})"


T = TypeVar("T")


def _positive(kind: Callable[[str], T]) -> Callable[[str], T]:
    def parse(text: str) -> T:
        value = kind(text)
        if not cast(float, value) > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _non_negative(kind: Callable[[str], T]) -> Callable[[str], T]:
    def parse(text: str) -> T:
        value = kind(text)
        if cast(float, value) < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _port_or_zero(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, got {text}")
    return value


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _sha256(text: str) -> str:
    if len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise argparse.ArgumentTypeError("expected 64 hexadecimal digits")
    return text.lower()


def add_serve_arguments(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """Declares the serve flags; each default comes from its variable in `environ`."""

    def flag(dest: str, *, help: str, **kwargs: object) -> None:
        env = ENV[dest]
        # Empty counts as unset: manifests often render optional values as "".
        default = environ.get(env) or None
        kind = kwargs.get("type")
        if default is not None and callable(kind):
            try:
                default = kind(default)
            except (argparse.ArgumentTypeError, ValueError) as exc:
                parser.error(f"{env}={default!r}: {exc}")
        required = kwargs.pop("required", False) and default is None
        parser.add_argument(
            "--" + dest.replace("_", "-"),
            dest=dest,
            default=default,
            required=bool(required),
            help=f"{help} [env {env}]",
            **kwargs,  # type: ignore[arg-type]
        )

    defaults = Settings(model_uri="", model_name="")
    flag("model_uri", required=True, help="model file: path, file://, http:// or https://")
    flag("model_name", required=True, help="name clients use in /v2/models/{name}")
    flag("model_version", help=f"version reported and routed (default {defaults.model_version})")
    flag("model_format", choices=FORMATS, help="model format (default: from the extension)")
    flag("model_sha256", type=_sha256, help="expected sha256 of the model file")
    flag("model_cache_dir", type=Path, help="where downloads are kept")
    flag("shared_cache_dir", type=Path, help="read-only model cache filled by the operator")
    flag("model_endpoint", help="s3://, gs:// and azure:// endpoint URL (compatible stores)")
    flag("model_region", help="s3:// region (us-east-1)")
    flag("host", help=f"listen address (default {defaults.host})")
    flag("port", type=_positive(int), help=f"HTTP port (default {defaults.port})")
    flag("grpc_port", type=_non_negative(int), help="gRPC port, 0 = none (8081)")
    flag("metrics_port", type=_non_negative(int), help="extra /metrics port, 0 = none (9090)")
    flag(
        "classified_port",
        type=_port_or_zero,
        help="HTTP port where shadow/pinned markers count, 0 = none (8090)",
    )
    flag("max_batch_size", type=_positive(int), help="rows per batch, 1 = no batching (16)")
    flag("max_queue_delay_us", type=_non_negative(int), help="wait for a fuller batch (1000)")
    flag("max_queue_size", type=_positive(int), help="queued requests before 503 (256)")
    flag("request_timeout_s", type=_positive(float), help="per-request deadline (30)")
    flag("priority_levels", type=_positive(int), help="request priority levels, 1 = highest (1)")
    flag("default_priority", type=_positive(int), help="level of requests without one (1)")
    flag(
        "lower_priority_max_batch_size",
        type=_non_negative(int),
        help="rows per batch without level-1 requests; 0 = auto: 1 on CPU, max on GPU (0)",
    )
    flag("max_body_bytes", type=_positive(int), help="largest request body, else 413 (64 MiB)")
    flag(
        "max_inflight_bytes",
        type=_non_negative(int),
        help="request memory in flight before 503; 0 = a quarter of the memory limit (0)",
    )
    flag(
        "grpc_max_concurrent_rpcs",
        type=_positive(int),
        help="gRPC calls served at once, more are refused; messages <= budget / this (64)",
    )
    flag(
        "grpc_max_connection_age_s",
        type=_non_negative(float),
        help="GOAWAY to gRPC connections older than this, 0 = never (0)",
    )
    flag(
        "grpc_max_connection_age_grace_s",
        type=_non_negative(float),
        help="time calls in flight get after that GOAWAY (default: the request timeout)",
    )
    flag("device", choices=get_args(Device), help="auto: CUDA when available (auto)")
    flag("torch_dtype", choices=get_args(TorchDtype), help="PyTorch compute dtype (fp32)")
    flag("threads", type=_positive(int), help="CPU threads per model (default: CPU limit)")
    flag(
        "batch_padding",
        choices=get_args(BatchPadding),
        help="pad batches to max size for exact results; auto = when the backend needs it",
    )
    flag("handler", help="handler package.module:Class when the bundle names none")
    flag(
        "handler_threads",
        type=_positive(int),
        help="threads running handlers' preprocess and postprocess (4)",
    )
    flag("revision", help="opaque revision label added to every metric")
    flag("shadow_config", type=Path, help="mirroring settings file, polled (none: no mirroring)")
    flag("drain_delay_s", type=_non_negative(float), help="serve on after SIGTERM (5)")
    flag(
        "warmup_window_s",
        type=_non_negative(float),
        help="seconds after Ready whose latencies count as warm-up, not analysed (0)",
    )
    flag("termination_log", type=Path, help="file for the fatal error message")
    flag("log_level", choices=("debug", "info", "warning", "error"), help="log level (info)")
    flag("access_log", type=_bool, help="log every request (false)")
    flag(
        "response_cache_bytes",
        type=_non_negative(int),
        help="response cache size for a deterministic model, 0 = no cache (0)",
    )


def settings_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Raises ValueError for settings that are invalid together."""
    given = {k: v for k, v in vars(args).items() if k in ENV and v is not None}
    for secret in ("model_auth_header", "model_access_key_id", "model_secret_access_key"):
        given[secret] = environ.get(ENV[secret]) or None
    settings = Settings(**given)
    _check_classified_port(settings)
    if settings.default_priority > settings.priority_levels:
        raise ValueError(
            f"default priority {settings.default_priority} is above the lowest level, "
            f"{settings.priority_levels} (KINFER_DEFAULT_PRIORITY, KINFER_PRIORITY_LEVELS)"
        )
    return settings


def _check_classified_port(settings: Settings) -> None:
    """The classified listener must be a port of its own: sharing one would let clients of
    the public port set the markers."""
    port = settings.classified_port
    if not port:
        return
    for name, other in (
        ("KINFER_PORT", settings.port),
        ("KINFER_GRPC_PORT", settings.grpc_port),
        ("KINFER_METRICS_PORT", settings.metrics_port),
    ):
        if port == other:
            raise ValueError(
                f"KINFER_CLASSIFIED_PORT {port} is also {name}; give it a port of its own"
            )


def object_store(settings: Settings, environ: Mapping[str, str] = os.environ) -> ObjectStore:
    """Endpoint, region and key pair for s3://, gs:// and azure:// sources; the AWS web
    identity (AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE) when there is no key pair."""
    credentials = None
    if settings.model_access_key_id and settings.model_secret_access_key:
        credentials = ObjectStoreCredentials(
            settings.model_access_key_id, settings.model_secret_access_key
        )
    return ObjectStore(
        settings.model_endpoint,
        settings.model_region,
        credentials,
        None if credentials else credentials_from_env(environ, settings.model_region),
    )
