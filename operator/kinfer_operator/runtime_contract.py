"""What the operator assumes about the runtime container: ports, paths and env variables.

The runtime (kinfer_runtime) reads exactly these variables; a unit test checks that the
runtime's CLI knows every one of them, so the two sides cannot drift apart.
"""

from __future__ import annotations

__all__ = [
    "CLASSIFIED_PORT",
    "CLASSIFIED_PORT_NAME",
    "GRPC_PORT",
    "HEALTH_LIVE_PATH",
    "HEALTH_READY_PATH",
    "HTTP_PORT",
    "METRICS_PORT",
    "MODEL_CACHE_DIR",
    "PINNED_MARKER_HEADER",
    "PVC_MOUNT_ROOT",
    "RUNTIME_UID",
    "SHADOW_CONFIG_DIR",
    "SHADOW_CONFIG_FILE",
    "SHARED_CACHE_DIR",
    "WEB_IDENTITY_AUDIENCE",
    "WEB_IDENTITY_TOKEN_DIR",
    "WEB_IDENTITY_TOKEN_SECONDS",
]

HTTP_PORT = 8080
GRPC_PORT = 8081
"""The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`)."""
METRICS_PORT = 9090
CLASSIFIED_PORT = 8090
"""The same HTTP API as HTTP_PORT, for the traffic kinfer itself sends: only here does the
runtime honour `x-kinfer-shadow` (the mirror) and PINNED_MARKER_HEADER (the pinned route
rule). On HTTP_PORT every request counts as live whatever its headers, so a client cannot
hide its requests from canary analysis. Reached through the shadow and track Services only,
never through the model's Service."""
CLASSIFIED_PORT_NAME = "classified"
REST_PREFIX = "/v2"
"""Every Open Inference Protocol REST path starts here; gRPC calls never do
(`/inference.GRPCInferenceService/<method>`)."""
HEALTH_LIVE_PATH = "/v2/health/live"
HEALTH_READY_PATH = "/v2/health/ready"
MODEL_CACHE_DIR = "/var/cache/kinfer"
PVC_MOUNT_ROOT = "/mnt/models"
SHARED_CACHE_DIR = "/var/cache/kinfer-shared"
"""Where the model cache volume is mounted: read-only in runtime pods, writable in the fill Job."""
FILL_COMMAND = ("kinfer-runtime", "fill-cache")
PINNED_MARKER_HEADER = "x-kinfer-pinned"
"""Set by the HTTPRoute's pinned rule, which sends to CLASSIFIED_PORT: the runtime counts such
requests in kinfer_pinned_requests_total, outside what canary analysis reads."""
RUNTIME_UID = 65532
"""The non-root user of Dockerfile.runtime; pinned in the pod so runAsNonRoot is provable."""
SHADOW_CONFIG_DIR = "/etc/kinfer/shadow"
WEB_IDENTITY_TOKEN_DIR = "/var/run/secrets/kinfer/web-identity"
"""spec.model.webIdentity: the projected ServiceAccount token's directory (file `token`)."""
WEB_IDENTITY_AUDIENCE = "sts.amazonaws.com"
WEB_IDENTITY_TOKEN_SECONDS = 3600
# The AWS SDKs' names, which the runtime reads as they do (not KINFER_*: EKS's webhook sets them).
ENV_AWS_ROLE_ARN = "AWS_ROLE_ARN"
ENV_AWS_WEB_IDENTITY_TOKEN_FILE = "AWS_WEB_IDENTITY_TOKEN_FILE"
"""Where the model's shadow ConfigMap is mounted (read-only, optional)."""
SHADOW_CONFIG_FILE = "mirror.json"
"""Its key: the mirror settings the runtime polls (KINFER_SHADOW_CONFIG points at it)."""

ENV_MODEL_URI = "KINFER_MODEL_URI"
ENV_MODEL_NAME = "KINFER_MODEL_NAME"
ENV_MODEL_VERSION = "KINFER_MODEL_VERSION"
ENV_MODEL_FORMAT = "KINFER_MODEL_FORMAT"
ENV_MODEL_SHA256 = "KINFER_MODEL_SHA256"
ENV_MODEL_CACHE_DIR = "KINFER_MODEL_CACHE_DIR"
ENV_MODEL_AUTH_HEADER = "KINFER_MODEL_AUTH_HEADER"
ENV_SHARED_CACHE_DIR = "KINFER_SHARED_CACHE_DIR"
ENV_MODEL_ENDPOINT = "KINFER_MODEL_ENDPOINT"
ENV_MODEL_REGION = "KINFER_MODEL_REGION"
ENV_MODEL_ACCESS_KEY_ID = "KINFER_MODEL_ACCESS_KEY_ID"
ENV_MODEL_SECRET_ACCESS_KEY = "KINFER_MODEL_SECRET_ACCESS_KEY"
ENV_CACHE_KEEP = "KINFER_CACHE_KEEP"
ENV_CACHE_MAX_BYTES = "KINFER_CACHE_MAX_BYTES"
ENV_PORT = "KINFER_PORT"
ENV_GRPC_PORT = "KINFER_GRPC_PORT"
ENV_METRICS_PORT = "KINFER_METRICS_PORT"
ENV_CLASSIFIED_PORT = "KINFER_CLASSIFIED_PORT"
ENV_MAX_BATCH_SIZE = "KINFER_MAX_BATCH_SIZE"
ENV_MAX_QUEUE_DELAY_US = "KINFER_MAX_QUEUE_DELAY_US"
ENV_MAX_QUEUE_SIZE = "KINFER_MAX_QUEUE_SIZE"
ENV_PRIORITY_LEVELS = "KINFER_PRIORITY_LEVELS"
ENV_DEFAULT_PRIORITY = "KINFER_DEFAULT_PRIORITY"
ENV_LOWER_PRIORITY_MAX_BATCH_SIZE = "KINFER_LOWER_PRIORITY_MAX_BATCH_SIZE"
ENV_HANDLER_THREADS = "KINFER_HANDLER_THREADS"
ENV_DEVICE = "KINFER_DEVICE"
ENV_TORCH_DTYPE = "KINFER_TORCH_DTYPE"
ENV_REVISION = "KINFER_REVISION"
ENV_SHADOW_CONFIG = "KINFER_SHADOW_CONFIG"
ENV_GRPC_MAX_CONNECTION_AGE_S = "KINFER_GRPC_MAX_CONNECTION_AGE_S"
ENV_GRPC_MAX_CONNECTION_AGE_GRACE_S = "KINFER_GRPC_MAX_CONNECTION_AGE_GRACE_S"
ENV_WARMUP_WINDOW_S = "KINFER_WARMUP_WINDOW_S"
"""spec.rollout.analysis.warmupSeconds: the runtime's latencies of that long after Ready go to
kinfer_warmup_request_duration_seconds, outside what latency analysis reads."""
ENV_RESPONSE_CACHE_BYTES = "KINFER_RESPONSE_CACHE_BYTES"
# Tracing: the OpenTelemetry SDK's own variables (the runtime's kinfer_runtime.tracing.OTEL_ENV).
# spec.runtime.env may set no OTEL_* name: the endpoint is the platform's choice.
ENV_OTEL_TRACES_EXPORTER = "OTEL_TRACES_EXPORTER"
ENV_OTEL_EXPORTER_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_OTEL_EXPORTER_OTLP_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
ENV_OTEL_TRACES_SAMPLER = "OTEL_TRACES_SAMPLER"
ENV_OTEL_TRACES_SAMPLER_ARG = "OTEL_TRACES_SAMPLER_ARG"
ENV_OTEL_SERVICE_NAME = "OTEL_SERVICE_NAME"
ENV_OTEL_RESOURCE_ATTRIBUTES = "OTEL_RESOURCE_ATTRIBUTES"
OTEL_ENV = (
    ENV_OTEL_TRACES_EXPORTER,
    ENV_OTEL_EXPORTER_OTLP_ENDPOINT,
    ENV_OTEL_EXPORTER_OTLP_PROTOCOL,
    ENV_OTEL_TRACES_SAMPLER,
    ENV_OTEL_TRACES_SAMPLER_ARG,
    ENV_OTEL_SERVICE_NAME,
    ENV_OTEL_RESOURCE_ATTRIBUTES,
)

ALL_ENV = (
    ENV_MODEL_URI,
    ENV_MODEL_NAME,
    ENV_MODEL_VERSION,
    ENV_MODEL_FORMAT,
    ENV_MODEL_SHA256,
    ENV_MODEL_CACHE_DIR,
    ENV_MODEL_AUTH_HEADER,
    ENV_SHARED_CACHE_DIR,
    ENV_MODEL_ENDPOINT,
    ENV_MODEL_REGION,
    ENV_MODEL_ACCESS_KEY_ID,
    ENV_MODEL_SECRET_ACCESS_KEY,
    ENV_PORT,
    ENV_GRPC_PORT,
    ENV_METRICS_PORT,
    ENV_CLASSIFIED_PORT,
    ENV_MAX_BATCH_SIZE,
    ENV_MAX_QUEUE_DELAY_US,
    ENV_MAX_QUEUE_SIZE,
    ENV_PRIORITY_LEVELS,
    ENV_DEFAULT_PRIORITY,
    ENV_LOWER_PRIORITY_MAX_BATCH_SIZE,
    ENV_HANDLER_THREADS,
    ENV_DEVICE,
    ENV_TORCH_DTYPE,
    ENV_REVISION,
    ENV_SHADOW_CONFIG,
    ENV_GRPC_MAX_CONNECTION_AGE_S,
    ENV_GRPC_MAX_CONNECTION_AGE_GRACE_S,
    ENV_WARMUP_WINDOW_S,
    ENV_RESPONSE_CACHE_BYTES,
)

FILL_ENV = (
    ENV_MODEL_URI,
    ENV_MODEL_SHA256,
    ENV_MODEL_AUTH_HEADER,
    ENV_SHARED_CACHE_DIR,
    ENV_MODEL_ENDPOINT,
    ENV_MODEL_REGION,
    ENV_MODEL_ACCESS_KEY_ID,
    ENV_MODEL_SECRET_ACCESS_KEY,
    ENV_CACHE_KEEP,
    ENV_CACHE_MAX_BYTES,
)
"""What the cache-fill Job (`kinfer-runtime fill-cache`) reads."""
PROGRESS_PREFIX = "kinfer-progress"
"""The fill command's progress lines: `kinfer-progress done=<bytes> total=<bytes or ?>`."""
