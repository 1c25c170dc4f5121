"""InferenceModel spec: what a user commits to git.

Every field here is declarative; a manifest must describe the whole desired state. Rules the
API server can enforce live next to the fields (bounds, enums, patterns, CEL), so an invalid
manifest is rejected at `kubectl apply` time with a message naming the field.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Annotated, Any, Literal

from kubernetes.utils.quantity import parse_quantity
from pydantic import (
    AfterValidator,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from kinfer_operator import runtime_contract
from kinfer_operator.api._base import ApiModel, cel, rule

__all__ = [
    "AWS_SECRET_KEYS",
    "AZURE_SECRET_KEYS",
    "DEFAULT_IDLE_SECONDS",
    "GPU",
    "GROUP",
    "HOLD_MARGIN_SECONDS",
    "KIND",
    "OBJECT_STORE_PREFIXES",
    "PLURAL",
    "VERSION",
    "Analysis",
    "Autoscaling",
    "AutoscalingMetric",
    "Batching",
    "Canary",
    "CanaryCapacity",
    "CanaryStep",
    "CustomCheck",
    "InferenceModelSpec",
    "ModelCache",
    "ModelSource",
    "PinnedTraffic",
    "Resources",
    "Retire",
    "Rollout",
    "Runtime",
    "Scheduling",
    "SecretKeyReference",
    "Shadow",
    "Toleration",
    "Traffic",
    "WebIdentity",
]

GROUP = "serving.kinfer.io"
VERSION = "v1alpha1"
KIND = "InferenceModel"
PLURAL = "inferencemodels"

OBJECT_STORE_PREFIXES = ("s3://", "gs://", "azure://")
AWS_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
"""The Secret keys of an s3:// or gs:// source's key pair."""
AZURE_SECRET_KEYS = ("AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY")
"""The Secret keys of an azure:// source's storage account name and account key."""

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
_DNS_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_NAME_PART = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
QUALIFIED_NAME = rf"^({_DNS_PREFIX}/)?{_NAME_PART}$"
"""A label key (and taint key): an optional DNS-subdomain prefix and a name of at most 63."""
EXTENDED_RESOURCE = rf"^{_DNS_PREFIX}/{_NAME_PART}$"
"""A vendor resource such as nvidia.com/gpu: always domain-qualified."""
_NATIVE_RESOURCES = ("cpu", "memory", "ephemeral-storage")
HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def _not_negative(value: int | str) -> int | str:
    # Mirrors the CEL rule for objects an older CRD let through; the format itself is
    # checked by the API server (isQuantity), which knows every suffix.
    if (isinstance(value, int) and value < 0) or str(value).startswith("-"):
        raise ValueError("a resource quantity must not be negative")
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_not_negative),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "maxLength": 64,
            "x-kubernetes-validations": [
                {
                    "rule": "type(self) == int || isQuantity(self)",
                    "message": "must be a Kubernetes quantity such as 500m, 2 or 8Gi",
                },
                {
                    "rule": "type(self) == int ? self >= 0 : "
                    "(!isQuantity(self) || quantity(self).compareTo(quantity('0')) >= 0)",
                    "message": "must not be negative",
                },
            ],
        }
    ),
]
"""A Kubernetes resource quantity; the API server checks the format with CEL."""

LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)]
"""A Kubernetes label value."""

FreeformObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""A Kubernetes object passed through verbatim (affinity, HPA metrics and behavior)."""


class SecretKeyReference(ApiModel):
    """A key in a Secret in the InferenceModel's namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    """Name of the Secret."""
    key: str = Field(default="authorization", min_length=1, max_length=253)
    """Key within the Secret whose value is used."""


class WebIdentity(ApiModel):
    """An IAM role the pods assume with their ServiceAccount's token (STS
    AssumeRoleWithWebIdentity), for clusters without EKS's pod-identity webhook.

    The operator mounts a projected token of the pods' ServiceAccount
    (spec.runtime.serviceAccountName) for the audience sts.amazonaws.com, the one IAM OpenID
    providers are set up with; a fixed audience, so a spec cannot mint the pods a token the
    API server would accept. The role's trust policy decides which ServiceAccounts may assume
    it."""

    role_arn: str = Field(
        max_length=2048,
        pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$",
    )
    """The role to assume, e.g. arn:aws:iam::111122223333:role/models-reader."""


class ModelCache(ApiModel):
    """A volume the model is downloaded into once per version, before pods start.

    An operator-owned Job fills it (download, sha256 check) before the revision's
    Deployment is created; runtime pods mount it read-only and skip the download.
    """

    claim_name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    """PersistentVolumeClaim in the model's namespace holding the cache. ReadWriteMany when
    replicas may land on several nodes; ReadWriteOnce serves a single node. Each model keeps
    its versions under a directory of its own name."""
    max_size: Quantity | None = None
    """How much this model's versions may hold, e.g. 20Gi. After each fill, unused versions
    are deleted, least recently filled first, until the total fits; a version that a live
    revision (stable, canary or desired) uses is never deleted. Unset: no limit."""
    fill_resources: Resources | None = None
    """CPU and memory of the fill Job's container. Each resource not given keeps its
    default (requests cpu 100m, memory 256Mi; limits cpu 1, memory 1Gi), so a namespace
    whose ResourceQuota requires requests and limits accepts the Job."""


class ModelSource(ApiModel):
    """Where the model comes from and what it is."""

    model_config = cel(
        rule(
            "!self.uri.startsWith('pvc://') || "
            "self.uri.matches('^pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?/.+$')",
            "a pvc:// uri must be pvc://<claim-name>/<path/in/volume>",
            ".uri",
        ),
        rule(
            "!has(self.credentials) || self.uri.matches('^(https?|s3|gs|azure)://')",
            "credentials apply only to http(s)://, s3://, gs:// and azure:// model uris",
            ".credentials",
        ),
        rule(
            "!self.uri.matches('^(s3|gs)://') || "
            "self.uri.matches('^(s3|gs)://[a-z0-9][-a-z0-9._]{1,61}[a-z0-9]/[^?#]*[^/?#]$')",
            "an object-store uri must be s3://<bucket>/<key> or gs://<bucket>/<key>",
            ".uri",
        ),
        rule(
            "!self.uri.startsWith('azure://') || "
            "self.uri.matches('^azure://[a-z0-9][-a-z0-9]{1,61}[a-z0-9]/[^?#]*[^/?#]$')",
            "an azure uri must be azure://<container>/<blob>",
            ".uri",
        ),
        rule(
            "!self.uri.startsWith('azure://') || has(self.credentials) || has(self.endpoint)",
            "an azure:// uri needs credentials (they name the storage account) or an endpoint",
            ".uri",
        ),
        rule(
            "!has(self.webIdentity) || self.uri.startsWith('s3://')",
            "webIdentity applies only to s3:// model uris",
            ".webIdentity",
        ),
        rule(
            "!has(self.webIdentity) || !has(self.credentials)",
            "set credentials (a Secret with keys) or webIdentity (a role), not both",
            ".webIdentity",
        ),
        rule(
            "!has(self.endpoint) || self.uri.matches('^(s3|gs|azure)://')",
            "endpoint applies only to s3://, gs:// and azure:// model uris",
            ".endpoint",
        ),
        rule(
            "!has(self.cache) || "
            "(self.uri.matches('^(https?|s3|gs|azure)://') && has(self.sha256))",
            "the model cache needs an http(s)://, s3://, gs:// or azure:// uri and its sha256: "
            "a cached version is keyed and verified by it",
            ".cache",
        ),
        rule(
            "!self.uri.startsWith('http') || "
            "self.uri.matches('^https?://[^/?#]+/[^?#]*[^/?#]([?#].*)?$')",
            "an http(s) uri must name the model file after the host: "
            "https://<host>/<path/to/model>",
            ".uri",
        ),
    )

    uri: str = Field(
        min_length=1,
        max_length=2048,
        pattern=r"^(file:///|pvc://|https?://|s3://|gs://|azure://)\S+$",
    )
    """Model file location: file:///path (baked into the image or mounted), pvc://claim/path
    (mounted read-only), http(s)://, s3://bucket/key, gs://bucket/key or
    azure://container/blob (downloaded by the runtime into an emptyDir, or once into
    spec.model.cache)."""
    format: Literal["onnx", "torchscript", "torch-export"] = "onnx"
    """Serialization format: onnx (ONNX Runtime), torchscript (.pt) or torch-export (.pt2)."""
    version: str = Field(min_length=1, max_length=63, pattern=LABEL_VALUE)
    """Free-form model version label, shown in status, pod labels and runtime metrics."""
    deterministic: bool = False
    """The model's outputs depend only on its inputs (no sampling, no state): the same input
    always gives the same output. Required by spec.runtime.responseCache."""
    sha256: str | None = Field(default=None, pattern=r"^[a-f0-9]{64}$")
    """Expected SHA-256 of the model file; a mismatch fails the load instead of serving it."""
    credentials: SecretKeyReference | None = None
    """For http(s)://: the Secret key holding the Authorization header value. For s3:// and
    gs://: the Secret (its `key` is not used) holding the keys AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY (for GCS, an HMAC key pair). For azure://: the Secret holding
    AZURE_STORAGE_ACCOUNT (the storage account's name) and AZURE_STORAGE_KEY (its key)."""
    web_identity: WebIdentity | None = None
    """s3:// only, instead of credentials: assume this IAM role with the pods' ServiceAccount
    token. Not needed where EKS's pod-identity webhook (IRSA) already injects a role: the
    runtime and the cache-fill Job honour the ServiceAccount's eks.amazonaws.com/role-arn
    annotation as they are."""
    endpoint: str | None = Field(
        default=None, max_length=2048, pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$"
    )
    """s3://, gs:// and azure:// only: the object store's URL, for S3-compatible stores
    (MinIO, Ceph, ...; objects are then addressed path-style under it) or the Azure Blob
    service's URL (e.g. Azurite's http://host:10000/devstoreaccount1). Default: AWS S3 in
    `region`, GCS, or https://<account>.blob.core.windows.net."""
    region: str = Field(default="us-east-1", min_length=1, max_length=63, pattern=r"^[a-z0-9-]+$")
    """s3:// only: the bucket's region, part of the request signature."""
    cache: ModelCache | None = None
    """Download the model once per version into a shared volume instead of once per pod."""

    @model_validator(mode="after")
    def _one_kind_of_credentials(self) -> ModelSource:
        # Mirrors the CEL rules, for objects an older CRD let through.
        if self.web_identity is not None and (
            self.credentials is not None or not self.uri.startswith("s3://")
        ):
            raise ValueError(
                "webIdentity applies only to s3:// model uris, and not with credentials"
            )
        return self

    @model_validator(mode="after")
    def _cache_needs_pinned_download(self) -> ModelSource:
        # Mirrors the CEL rule, for objects an older CRD let through.
        remote = self.uri.startswith(("http://", "https://", *OBJECT_STORE_PREFIXES))
        if self.cache is not None and not (remote and self.sha256):
            raise ValueError(
                "the model cache needs an http(s)://, s3://, gs:// or azure:// uri and its sha256"
            )
        return self

    @property
    def object_store_keys(self) -> tuple[str, str] | None:
        """The Secret keys holding the key id (or account) and the secret for an object-store
        uri; None for other uris."""
        if self.uri.startswith("azure://"):
            return AZURE_SECRET_KEYS
        if self.uri.startswith(OBJECT_STORE_PREFIXES):
            return AWS_SECRET_KEYS
        return None


class GPU(ApiModel):
    """GPUs per replica. Omit, or set count 0, to serve on the CPU."""

    model_config = cel(
        rule(
            "!self.resourceName.contains('kubernetes.io/')",
            "must be a vendor's extended resource such as nvidia.com/gpu, "
            "not in the kubernetes.io namespace",
            ".resourceName",
        ),
    )

    count: int = Field(default=1, ge=0, le=64)
    """Whole GPUs each replica requests as a resource limit; 0 means CPU only."""
    product: str | None = Field(default=None, max_length=63, pattern=LABEL_VALUE)
    """Only schedule onto nodes whose product label equals this, e.g. NVIDIA-H100-80GB-HBM3."""
    resource_name: str = Field(
        default="nvidia.com/gpu", min_length=1, max_length=317, pattern=EXTENDED_RESOURCE
    )
    """Extended resource name of the device plugin; also the tolerated taint key.
    Change it for other vendors, e.g. amd.com/gpu."""
    product_label: str = Field(
        default="nvidia.com/gpu.product", min_length=1, max_length=317, pattern=QUALIFIED_NAME
    )
    """Node label that carries the GPU product name (set by GPU feature discovery)."""


class Resources(ApiModel):
    """CPU and memory for each runtime container. GPUs are set under runtime.gpu."""

    model_config = cel(
        rule(
            "(!has(self.requests) || !self.requests.exists(k, k.contains('gpu'))) && "
            "(!has(self.limits) || !self.limits.exists(k, k.contains('gpu')))",
            "set GPUs with spec.runtime.gpu, not as a raw resource",
        ),
        *(
            rule(
                f"!has(self.{side}) || self.{side}.all(k, k in {list(_NATIVE_RESOURCES)} "
                f"|| k.startsWith('hugepages-') || k.matches(r'{EXTENDED_RESOURCE}'))",
                "resource names are cpu, memory, ephemeral-storage, hugepages-<size> or a "
                "domain-qualified extended resource such as example.com/fpga",
                f".{side}",
            )
            for side in ("requests", "limits")
        ),
        rule(
            "!has(self.requests) || !has(self.limits) || self.requests.all(k, "
            "!(k in self.limits) "
            "|| !isQuantity(string(self.requests[k])) || !isQuantity(string(self.limits[k])) "
            "|| quantity(string(self.requests[k])).compareTo("
            "quantity(string(self.limits[k]))) <= 0)",
            "every request must be less than or equal to its limit",
            ".requests",
        ),
    )

    requests: dict[str, Quantity] = Field(default_factory=dict, max_length=16)
    """Minimum resources the scheduler reserves, e.g. {cpu: "2", memory: 8Gi}."""
    limits: dict[str, Quantity] = Field(default_factory=dict, max_length=16)
    """Maximum resources the container may use."""


class Batching(ApiModel):
    """Dynamic batching in the runtime: requests arriving together run as one batch."""

    model_config = cel(
        rule(
            # has(): the API server also checks this rule against the `batching: {}` default,
            # before its fields are defaulted.
            "!has(self.defaultPriorityLevel) || self.defaultPriorityLevel <= "
            "(has(self.priorityLevels) ? self.priorityLevels : 1)",
            "defaultPriorityLevel must be one of the levels: at most priorityLevels",
            ".defaultPriorityLevel",
        ),
    )

    max_batch_size: int = Field(default=32, ge=1, le=4096)
    """Largest batch the runtime forms; also the warm-up sizes' upper bound."""
    max_queue_delay_microseconds: int = Field(default=2000, ge=0, le=10_000_000)
    """How long the first request of a batch may wait for others to join."""
    max_queue_size: int = Field(default=256, ge=1, le=1_000_000)
    """Requests allowed to wait at each priority level; beyond it the runtime answers 503 with
    Retry-After (gRPC: RESOURCE_EXHAUSTED)."""
    priority_levels: int = Field(default=1, ge=1, le=16)
    """Request priority levels, Triton's way: a request's `priority` parameter picks level 1
    (highest) to priorityLevels, each with a queue of its own; batches fill from level 1."""
    default_priority_level: int = Field(default=1, ge=1, le=16)
    """Level of requests that give no priority (or one outside 1..priorityLevels)."""
    lower_priority_max_batch_size: int | None = Field(default=None, ge=1, le=4096)
    """Most rows in a batch that holds no level-1 request: it bounds how long a level-1
    request waits behind lower-priority work. Unset: the runtime's choice, 1 on a CPU (where
    each row costs as much as a request alone) and no cap on a GPU."""

    @model_validator(mode="after")
    def _default_is_a_level(self) -> Batching:
        # Mirrors the CEL rule, for objects an older CRD let through.
        if self.default_priority_level > self.priority_levels:
            raise ValueError("defaultPriorityLevel must be at most priorityLevels")
        return self


class EnvVar(ApiModel):
    """An extra environment variable for the runtime container."""

    model_config = cel(
        rule(
            f"!(self.name in {list(runtime_contract.ALL_ENV)})",
            "is set by the operator (the runtime contract): use the spec field it comes "
            "from instead, e.g. spec.runtime.batching for KINFER_MAX_BATCH_SIZE",
            ".name",
        ),
        rule(
            "!self.name.startsWith('OTEL_')",
            "OTEL_* variables are set by the operator from spec.runtime.tracing and the "
            "platform's OTLP endpoint",
            ".name",
        ),
    )

    name: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    """Variable name; not one of the KINFER_* variables the operator sets itself."""
    value: str = Field(default="", max_length=32768)
    """Variable value."""

    @field_validator("name")
    @classmethod
    def _not_the_runtime_contract(cls, name: str) -> str:
        if name in runtime_contract.ALL_ENV or name.startswith("OTEL_"):
            raise ValueError(f"{name} is set by the operator (the runtime contract)")
        return name


_BINARY_SUFFIX = {"Gi": 1 << 30, "Ti": 1 << 40}


def _at_most(field: str, bound: str) -> dict[str, str]:
    """A CEL rule bounding a Quantity field (tenant input) from above."""
    limit = int(bound[:-2]) * _BINARY_SUFFIX[bound[-2:]]
    return rule(
        f"!has(self.{field}) || (type(self.{field}) == int ? self.{field} <= {limit} : "
        f"!isQuantity(self.{field}) || quantity(self.{field}).compareTo(quantity('{bound}')) <= 0)",
        f"must be at most {bound}",
        f".{field}",
    )


class Scratch(ApiModel):
    """Size limits of the pod's writable emptyDirs: past one, the kubelet evicts the pod
    rather than let it fill the node's disk (or memory, for a memory-backed volume)."""

    model_config = cel(_at_most("tmp", "64Gi"), _at_most("modelCache", "4Ti"))

    tmp: Quantity = "1Gi"
    """/tmp of the runtime and of the cache-fill Job."""
    model_cache: Quantity = "50Gi"
    """Where the runtime downloads the model when there is no spec.model.cache: at least the
    model's size."""

    @field_validator("tmp", "model_cache")
    @classmethod
    def _bounded(cls, value: int | str, info: ValidationInfo) -> int | str:
        # Mirrors the CEL rules, for objects an older CRD let through.
        bound = {"tmp": "64Gi", "model_cache": "4Ti"}[str(info.field_name)]
        limit = int(bound[:-2]) * _BINARY_SUFFIX[bound[-2:]]
        if parse_quantity(value) > limit:  # type: ignore[no-untyped-call]
            raise ValueError(f"must be at most {bound}")
        return value


class GrpcConnections(ApiModel):
    """The runtime's gRPC endpoint (port 8081): how long one client connection may live."""

    max_connection_age_seconds: int | None = Field(default=None, ge=1, le=86400)
    """Connections older than this get a GOAWAY (grpcio adds +-10% jitter): the client's
    channel reconnects, through the Service, to whichever pod it picks then, without a failed
    call. Set it when long-lived gRPC channels come through the model's Service, so they follow
    the replica ratio during a canary and spread over new replicas (e.g. 60). Unset: a
    connection lives as long as its client keeps it, and stays on one pod."""
    max_connection_age_grace_seconds: int | None = Field(default=None, ge=0, le=3600)
    """After that GOAWAY, how long calls in flight on the old connection get to finish before
    it is closed. Unset: the runtime's request timeout (KINFER_REQUEST_TIMEOUT_S, 30 s), which
    no call outlives."""


class ResponseCache(ApiModel):
    """The runtime's response cache: a repeated input is answered from memory without running
    the model (response header `x-kinfer-cache: hit`)."""

    max_bytes: int = Field(ge=1 << 20, le=64 << 30)
    """Bound of the cached outputs in bytes (least recently used entries go first); count it
    in the container's memory limit."""


class Tracing(ApiModel):
    """OpenTelemetry tracing of the runtime's requests, exported by OTLP to the collector the
    platform configured (the operator's `tracing.otlpEndpoint` chart value): a model only
    turns tracing on and picks its sampling, it cannot choose where spans go."""

    sampling_ratio: float = Field(default=0.01, ge=0.0, le=1.0)
    """Share of the requests without a sampled parent that are traced; a request whose
    W3C `traceparent` says sampled is always traced (parent-based sampling)."""


class Runtime(ApiModel):
    """The serving container: image, accelerators, resources and batching."""

    image: str = Field(min_length=1, max_length=1024, pattern=r"^\S+$")
    """kinfer runtime image (or a compatible one that speaks the Open Inference Protocol)."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """When the kubelet pulls the image."""
    image_pull_secrets: list[
        Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
    ] = Field(
        default_factory=list, max_length=16, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Names of Secrets used to pull the image."""
    gpu: GPU | None = None
    """Accelerators per replica; omit for CPU-only serving."""
    resources: Resources = Field(default_factory=Resources)
    """CPU and memory requests and limits."""
    scratch: Scratch = Field(default_factory=Scratch)
    """Size limits of the writable emptyDirs (/tmp, the download cache)."""
    batching: Batching = Field(default_factory=Batching)
    """Dynamic batching settings passed to the runtime."""
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    """Compute precision for PyTorch models on GPU; ONNX models run as exported."""
    handler_threads: int | None = Field(default=None, ge=1, le=64)
    """Threads running a bundle handler's preprocess and postprocess (the runtime's default, 4,
    when unset)."""
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Extra environment variables, each name once, e.g. KINFER_REQUEST_TIMEOUT_S."""
    startup_timeout_seconds: int = Field(default=600, ge=30, le=7200)
    """Budget to download, load and warm up the model; past it the replica counts as failed."""
    termination_grace_period_seconds: int = Field(default=60, ge=5, le=3600)
    """Time for a stopping replica to drain in-flight requests."""
    grpc: GrpcConnections = Field(default_factory=GrpcConnections)
    """gRPC connection lifetime (long-lived channels re-balancing across pods)."""
    service_account_name: str | None = Field(default=None, max_length=253, pattern=DNS_SUBDOMAIN)
    """ServiceAccount the runtime pods run as; the namespace default when unset."""
    response_cache: ResponseCache | None = None
    """Answer repeated inputs from memory; only for spec.model.deterministic models. Off
    when absent."""
    tracing: Tracing | None = None
    """OpenTelemetry tracing of requests (W3C traceparent in, OTLP out); off when absent, and
    without effect when the platform set no OTLP endpoint."""


class Toleration(ApiModel):
    """A pod toleration (subset of core/v1 Toleration)."""

    model_config = cel(
        rule(
            "!(has(self.operator) && self.operator == 'Exists') "
            "|| !has(self.value) || self.value == ''",
            "operator Exists matches any value: leave value empty",
            ".value",
        ),
        rule(
            "(has(self.key) && self.key != '') "
            "|| (has(self.operator) && self.operator == 'Exists')",
            "an empty key matches every taint only with operator Exists",
            ".operator",
        ),
        rule(
            "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            "tolerationSeconds applies only to effect NoExecute",
            ".tolerationSeconds",
        ),
    )

    key: str | None = Field(default=None, max_length=316, pattern=QUALIFIED_NAME)
    """Taint key the toleration matches; empty with operator Exists matches all."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """How key and value are compared."""
    value: str | None = Field(default=None, max_length=63, pattern=LABEL_VALUE)
    """Taint value for operator Equal."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; empty matches all effects."""
    toleration_seconds: int | None = Field(default=None, ge=0)
    """For NoExecute: how long the pod stays bound after the taint appears."""

    @model_validator(mode="after")
    def _as_kubernetes_validates(self) -> Toleration:
        # Mirrors the CEL rules, for objects an older CRD let through.
        if self.operator == "Exists" and self.value:
            raise ValueError("operator Exists matches any value: leave value empty")
        if not self.key and self.operator != "Exists":
            raise ValueError("an empty key matches every taint only with operator Exists")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds applies only to effect NoExecute")
        return self


class Scheduling(ApiModel):
    """Where runtime pods may run, on top of the GPU placement kinfer adds itself."""

    model_config = cel(
        rule(
            f"!has(self.nodeSelector) || self.nodeSelector.all(k, size(k) <= 317 "
            f"&& k.matches(r'{QUALIFIED_NAME}'))",
            "nodeSelector keys must be label keys: [prefix/]name, the name at most 63 "
            "alphanumerics, '-', '_' or '.', the prefix a DNS subdomain",
            ".nodeSelector",
        ),
    )

    node_selector: dict[str, LabelValue] = Field(default_factory=dict, max_length=32)
    """Extra node labels a node must have."""
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    """Extra taints the pods tolerate (the GPU taint is tolerated automatically)."""
    affinity: FreeformObject | None = None
    """A core/v1 Affinity, passed through unchanged."""
    priority_class_name: str | None = Field(default=None, max_length=253, pattern=DNS_SUBDOMAIN)
    """PriorityClass of the runtime pods."""

    @field_validator("node_selector")
    @classmethod
    def _label_keys(cls, selector: dict[str, str]) -> dict[str, str]:
        bad = [k for k in selector if len(k) > 317 or not re.match(QUALIFIED_NAME, k)]
        if bad:
            raise ValueError(f"not label keys: {bad}")
        return selector


class AutoscalingMetric(ApiModel):
    """One signal the HorizontalPodAutoscaler scales on."""

    model_config = cel(
        rule(
            "self.type == 'raw' ? has(self.raw) && !has(self.target) "
            ": has(self.target) && !has(self.raw)",
            "type raw needs raw (an autoscaling/v2 MetricSpec) and no target; "
            "every other type needs target and no raw",
        ),
        rule(
            "!(self.type == 'gpuUtilization' && has(self.target)) || self.target <= 100",
            "gpuUtilization target is a percentage: at most 100",
            ".target",
        ),
    )

    type: Literal["concurrency", "queueDepth", "gpuUtilization", "cpu", "memory", "raw"]
    """concurrency: in-flight requests per pod; queueDepth: queued requests per pod;
    gpuUtilization: DCGM GPU utilisation percent; cpu and memory: utilisation percent of the
    request; raw: an autoscaling/v2 MetricSpec passed through."""
    target: int | None = Field(default=None, ge=1, le=100_000)
    """Target per-pod average (concurrency, queueDepth) or utilisation percent (the rest)."""
    raw: FreeformObject | None = None
    """An autoscaling/v2 MetricSpec, for type raw only."""

    @model_validator(mode="after")
    def _target_or_raw(self) -> AutoscalingMetric:
        # Mirrors the CEL rule, for objects an older CRD let through: the HPA builder relies
        # on it, and a pass must report such a spec, not fail on it.
        if self.type == "raw" and (self.raw is None or self.target is not None):
            raise ValueError("type raw needs raw (an autoscaling/v2 MetricSpec) and no target")
        if self.type != "raw" and (self.target is None or self.raw is not None):
            raise ValueError(f"type {self.type} needs target and no raw")
        return self


class Autoscaling(ApiModel):
    """Horizontal autoscaling of the serving replicas with an autoscaling/v2 HPA, and scale to
    zero (minReplicas 0) behind the kinfer activator."""

    model_config = cel(
        rule(
            "self.minReplicas <= self.maxReplicas",
            "minReplicas must be less than or equal to maxReplicas",
            ".minReplicas",
        ),
        rule(
            "!has(self.idleSeconds) || self.minReplicas == 0",
            "idleSeconds applies only with minReplicas 0 (scale to zero)",
            ".idleSeconds",
        ),
    )

    min_replicas: int = Field(default=1, ge=0, le=1000)
    """Fewest replicas. 0: scale to zero after idleSeconds without requests; the activator
    holds requests that arrive at zero and wakes the model (the HPA keeps at least 1 while
    the model is awake)."""
    max_replicas: int = Field(ge=1, le=1000)
    """Most replicas."""
    metrics: list[AutoscalingMetric] = Field(
        default_factory=lambda: [AutoscalingMetric(type="concurrency", target=8)],
        min_length=1,
        max_length=8,
    )
    """Signals to scale on; the HPA follows whichever asks for the most replicas."""
    behavior: FreeformObject | None = None
    """An autoscaling/v2 HPA behavior. Unset: scale up fast, scale down slowly after a
    5-minute stabilisation window, as GPU replicas are expensive to restart."""
    idle_seconds: int | None = Field(default=None, ge=30, le=604_800)
    """With minReplicas 0: time without requests before the model goes to zero (default
    300), counted again from each wake-up."""
    target_concurrency: int | None = Field(default=None, ge=1, le=4096)
    """Requests one replica takes at a time when the activator wakes the model
    (ceil(held / targetConcurrency) replicas) and releases held requests to it; default
    spec.runtime.batching.maxBatchSize."""
    max_held_requests: int = Field(default=1000, ge=1, le=100_000)
    """Most requests the activator holds for the model while it wakes; beyond: 503 with
    Retry-After (gRPC UNAVAILABLE)."""
    max_hold_seconds: int | None = Field(default=None, ge=1, le=7_800)
    """Longest a held request waits for a Ready replica before 503 (gRPC UNAVAILABLE);
    default spec.runtime.startupTimeoutSeconds plus 60."""
    prometheus: str | None = Field(default=None, max_length=63, pattern=DNS_LABEL)
    """With minReplicas 0: name of the Prometheus endpoint (one the operator is configured
    with) that tells whether the model had requests; the operator's default when absent."""

    @property
    def scales_to_zero(self) -> bool:
        """minReplicas 0: the model goes to zero when idle."""
        return self.min_replicas == 0


DEFAULT_IDLE_SECONDS = 300
"""spec.autoscaling.idleSeconds when unset."""
HOLD_MARGIN_SECONDS = 60
"""maxHoldSeconds' default lies this far past the startup budget, so a request held through a
cold start that uses the whole budget is still answered by the model."""


class CanaryStep(ApiModel):
    """One canary step: a traffic weight held for at least `pauseSeconds`."""

    weight: int = Field(ge=0, le=100)
    """Percent of traffic sent to the canary at this step. 0 (first step only, with
    traffic.pin): a pinned-only step, where one canary replica serves header-pinned requests
    alone for pauseSeconds, with no analysis (it has no analysed traffic)."""
    pause_seconds: int = Field(default=60, ge=0, le=86_400)
    """Minimum time at this weight; the step advances once it has passed and the latest
    analysis passed."""


class CanaryCapacity(ApiModel):
    """Where the candidate's pods come from."""

    mode: Literal["surge", "reuse"] = "surge"
    """surge: the candidate's replicas are added next to stable's full count (needs spare
    GPUs for them). reuse: each step moves replicas from stable to the candidate, so the
    model never holds more than replicas + maxSurge pods; the weight follows the moved
    replicas, and a rollback moves them back."""
    max_surge: int = Field(default=1, ge=1, le=100)
    """reuse: pods the model may hold above its replica count while a replica moves (a
    candidate pod starts before a stable one goes, so capacity never drops)."""


class Canary(ApiModel):
    """Progressive traffic shifting. Give `steps`, or `stepWeight` up to `maxWeight`."""

    model_config = cel(
        rule(
            "has(self.steps) != has(self.stepWeight)",
            "give either steps or stepWeight (with maxWeight), not both and not neither",
        ),
        rule(
            "!has(self.stepWeight) || self.stepWeight <= self.maxWeight",
            "stepWeight must be less than or equal to maxWeight",
            ".stepWeight",
        ),
        rule(
            "!has(self.steps) || (self.steps.map(s, s.weight).isSorted() "
            "&& self.steps.all(s, self.steps.exists_one(t, t.weight == s.weight)))",
            "step weights must strictly increase",
            ".steps",
        ),
    )

    steps: list[CanaryStep] | None = Field(default=None, min_length=1, max_length=20)
    """Explicit weights and pauses, in order."""
    step_weight: int | None = Field(default=None, ge=1, le=100)
    """Weight increment per step when `steps` is not given."""
    max_weight: int = Field(default=50, ge=1, le=100)
    """Last weight before promotion when using stepWeight."""
    step_pause_seconds: int = Field(default=60, ge=0, le=86_400)
    """Pause at each generated step when using stepWeight."""
    progress_deadline_seconds: int = Field(default=900, ge=30, le=86_400)
    """How long the canary may take to become ready (model load and warm-up included)
    before it is rolled back, e.g. when it waits for GPUs."""
    scale_down_delay_seconds: int = Field(default=30, ge=0, le=3600)
    """How long a rolled-back or replaced revision keeps its pods after traffic left it, so
    in-flight requests finish."""
    capacity: CanaryCapacity = Field(default_factory=CanaryCapacity)
    """Whether the candidate surges in next to stable or reuses stable's replicas."""

    @model_validator(mode="after")
    def _steps_or_step_weight(self) -> Canary:
        # Mirrors the CEL rules, for objects an older CRD let through: weights() relies on
        # them (no steps at all otherwise), and a pass must report such a spec, not fail on it.
        if (self.steps is None) == (self.step_weight is None):
            raise ValueError(
                "give either steps or stepWeight (with maxWeight), not both and not neither"
            )
        if self.step_weight is not None and self.step_weight > self.max_weight:
            raise ValueError("stepWeight must be less than or equal to maxWeight")
        return self

    @field_validator("steps")
    @classmethod
    def _weights_increase(cls, steps: list[CanaryStep] | None) -> list[CanaryStep] | None:
        # Mirrors the CEL rule, for objects an older CRD let through.
        weights = [s.weight for s in steps or []]
        if any(b <= a for a, b in pairwise(weights)):
            raise ValueError(f"step weights must strictly increase, got {weights}")
        return steps

    def weights(self) -> list[tuple[int, int]]:
        """(weight, pause seconds) for every step, generated from stepWeight if needed."""
        if self.steps:
            return [(s.weight, s.pause_seconds) for s in self.steps]
        assert self.step_weight is not None  # guaranteed by the CEL rule
        count = self.max_weight // self.step_weight
        return [(self.step_weight * (i + 1), self.step_pause_seconds) for i in range(count)]


class ErrorRateCheck(ApiModel):
    """Fail when the canary's ratio of failed requests is above `max`."""

    max: float = Field(default=0.01, ge=0, le=1)
    """Highest acceptable ratio of non-2xx responses (0.01 = 1%)."""
    exclude_client_errors: bool = True
    """Leave 4xx responses out: they are the client's fault, not the model's."""


class LatencyCheck(ApiModel):
    """Fail when the canary's p99 latency is above `maxSeconds`."""

    max_seconds: float = Field(gt=0, le=3600)
    """Highest acceptable 99th-percentile request latency in seconds."""


class CustomCheck(ApiModel):
    """A PromQL query whose single value must stay within bounds."""

    model_config = cel(
        rule(
            "has(self.min) || has(self.max)",
            "a custom check needs min, max or both",
        ),
        rule(
            "!has(self.min) || !has(self.max) || self.min <= self.max",
            "min must be less than or equal to max",
            ".min",
        ),
    )

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-zA-Z][-_a-zA-Z0-9]*$")
    """Name shown in status and Events."""
    query: str = Field(min_length=1, max_length=4096)
    """PromQL returning one value, confined to the model's namespace: every selector gets
    namespace="<the model's namespace>", replacing any namespace matcher it had.
    {{namespace}}, {{model}}, {{revision}} and {{window}} are replaced with the canary's
    values; {{selector}} with the label matchers the built-in checks use (in a shadow phase
    it selects the mirrored requests only)."""
    min: float | None = None
    """Lowest acceptable value."""
    max: float | None = None
    """Highest acceptable value."""

    @model_validator(mode="after")
    def _bounds_in_order(self) -> CustomCheck:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must be less than or equal to max")
        return self


class Analysis(ApiModel):
    """Metric checks run against Prometheus at every interval of every canary step."""

    prometheus: str | None = Field(default=None, max_length=63, pattern=DNS_LABEL)
    """Name of a Prometheus endpoint the operator is configured with (its chart's
    prometheus.endpoints); the operator's default endpoint when absent. Only the platform
    sets URLs and credentials, so a model cannot make the operator query anything else."""
    interval_seconds: int = Field(default=30, ge=1, le=3600)
    """Time between two analyses; also the query window."""
    min_request_count: int = Field(default=20, ge=0, le=1_000_000)
    """Below this many canary requests in the window the analysis is inconclusive: the step
    holds, nothing fails."""
    failure_limit: int = Field(default=3, ge=1, le=100)
    """Failed analyses that trigger a rollback."""
    failure_limit_mode: Literal["Consecutive", "Cumulative"] = "Consecutive"
    """Whether failureLimit counts consecutive failed analyses or all of them in the rollout."""
    error_limit: int = Field(default=5, ge=1, le=100)
    """Consecutive analyses that could not query Prometheus before the rollout is aborted.
    These never count as failed checks."""
    error_rate: ErrorRateCheck | None = Field(default_factory=ErrorRateCheck)
    """Built-in check on the runtime's kinfer_requests_total."""
    latency_p99: LatencyCheck | None = None
    """Built-in check on the runtime's kinfer_request_duration_seconds."""
    warmup_seconds: int = Field(default=0, ge=0, le=3600)
    """Each pod's first seconds after Ready, left out of latency analysis: the runtime
    records their latencies in kinfer_warmup_request_duration_seconds instead of
    kinfer_request_duration_seconds (which latencyP99 and custom latency queries read), so a
    JIT or cache warm-up does not fail a good version. Their requests still count for the
    error rate. Applies to every pod of the revisions created while it is set; changing it
    restarts the current revision's pods (as a change of the operator's pod template does)."""
    custom: list[CustomCheck] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Extra PromQL checks."""


class GatewayTraffic(ApiModel):
    """Where the HTTPRoute attaches."""

    parent_refs: list[FreeformObject] = Field(min_length=1, max_length=16)
    """Gateway API parentRefs (usually one Gateway), passed through."""
    hostnames: list[Annotated[str, Field(max_length=253, pattern=HOSTNAME)]] = Field(
        default_factory=list, max_length=16
    )
    """Hostnames the route matches."""


HTTP_HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"
"""RFC 7230 token, as Gateway API's HTTPHeaderName."""


class PinnedTraffic(ApiModel):
    """Requests carrying this header reach the candidate whatever its weight (0 included)."""

    header: str = Field(
        default="x-kinfer-revision", min_length=1, max_length=256, pattern=HTTP_HEADER_NAME
    )
    """Header name matched (case-insensitive, as HTTP header names are)."""
    value: str = Field(default="canary", min_length=1, max_length=4096)
    """Exact header value that pins a request to the candidate."""

    model_config = cel(
        rule(
            "self.header.lowerAscii() != '" + runtime_contract.PINNED_MARKER_HEADER + "'",
            "header must not be the marker the gateway sets on pinned requests",
            ".header",
        ),
    )


class Traffic(ApiModel):
    """How traffic is split between the stable and canary revisions."""

    model_config = cel(
        rule(
            "!has(self.mode) || self.mode != 'GatewayAPI' || has(self.gateway)",
            "mode GatewayAPI needs gateway.parentRefs",
            ".gateway",
        ),
        rule(
            "!has(self.pin) || (has(self.mode) && self.mode == 'GatewayAPI')",
            "pin needs mode GatewayAPI: ReplicaRatio has no per-request routing",
            ".pin",
        ),
    )

    mode: Literal["ReplicaRatio", "GatewayAPI"] = "ReplicaRatio"
    """ReplicaRatio: one Service over both revisions, replica counts approximate the weight
    (works everywhere). GatewayAPI: an HTTPRoute with exact weights."""
    gateway: GatewayTraffic | None = None
    """HTTPRoute attachment, for mode GatewayAPI."""
    pin: PinnedTraffic | None = None
    """Header-pinned canary (mode GatewayAPI): an extra route rule sends requests with this
    header to the candidate at any weight, marked so the runtime counts them apart from the
    analysed traffic (kinfer_pinned_requests_total)."""

    @model_validator(mode="after")
    def _gateway_for_gateway_mode(self) -> Traffic:
        # Mirrors the CEL rule, for objects an older CRD let through: the HTTPRoute builder
        # relies on it, and a pass must report such a spec, not fail on it.
        if self.mode == "GatewayAPI" and self.gateway is None:
            raise ValueError("mode GatewayAPI needs gateway.parentRefs")
        return self


class Shadow(ApiModel):
    """A shadow phase before the first canary step: the stable runtime mirrors a share of the
    requests it answered to the candidate, whose answers are discarded. Users only ever see
    stable's answers; the analysis reads the candidate's mirrored requests alone."""

    model_config = cel(
        rule(
            "!has(self.maxConcurrency) || !has(self.maxQueue) "
            "|| self.maxConcurrency <= self.maxQueue",
            "maxConcurrency must be less than or equal to maxQueue",
            ".maxConcurrency",
        ),
    )

    percent: int = Field(ge=1, le=100)
    """Percent of the requests each stable replica answered that it copies to the candidate."""
    pause_seconds: int = Field(default=120, ge=0, le=86_400)
    """Minimum time in the shadow phase; it ends once this has passed and an analysis of
    the mirrored requests passed."""
    timeout_seconds: int = Field(default=5, ge=1, le=60)
    """How long a mirrored request may take before it is given up (counted as failed)."""
    max_queue: int = Field(default=256, ge=1, le=10_000)
    """Mirrored requests each stable replica may hold; beyond it they are dropped (and
    counted), never waited for."""
    max_concurrency: int = Field(default=4, ge=1, le=256)
    """Mirrored requests each stable replica sends at once."""

    @model_validator(mode="after")
    def _concurrency_within_queue(self) -> Shadow:
        # Mirrors the CEL rule, for objects an older CRD let through.
        if self.max_concurrency > self.max_queue:
            raise ValueError("maxConcurrency must be less than or equal to maxQueue")
        return self


class Retire(ApiModel):
    """The pace at which a replaced revision's pods go (after promotion or a rollback), so
    their clients move over a few at a time instead of all at once."""

    pods_per_step: int = Field(default=1, ge=1, le=100)
    """Pods removed at a time; the next ones go once the Service's EndpointSlices no longer
    list them and the pods taking their traffic are Ready."""
    interval_seconds: int = Field(default=5, ge=0, le=600)
    """Least time between two steps."""


class Rollout(ApiModel):
    """How a new revision replaces the stable one. Absent: all at once, after it is ready."""

    model_config = cel(
        rule(
            "!has(self.canary.steps) || self.canary.steps.all(s, s.weight > 0) "
            "|| (has(self.traffic) && has(self.traffic.pin))",
            "a weight 0 step needs traffic.pin: with no pinned requests it would carry nothing",
            ".canary.steps",
        ),
    )

    canary: Canary
    """Canary steps."""
    shadow: Shadow | None = None
    """Mirror live requests to the candidate before it gets any traffic; absent: no shadow
    phase."""
    analysis: Analysis = Field(default_factory=Analysis)
    """Metric checks that gate each step."""
    traffic: Traffic = Field(default_factory=Traffic)
    """Traffic splitting."""
    retry: str = Field(default="", max_length=63)
    """Change to any new value to roll out a revision again after it was rolled back."""
    retire: Retire = Field(default_factory=Retire)
    """How fast the replaced revision's pods are removed at promotion and rollback."""


class InferenceModelSpec(ApiModel):
    """Desired state of a served model."""

    model_config = cel(
        rule(
            "!has(self.runtime.responseCache) || "
            "(has(self.model.deterministic) && self.model.deterministic)",
            "responseCache needs spec.model.deterministic: true (a cached answer is only right "
            "for a model whose outputs depend on its inputs alone)",
            ".runtime.responseCache",
        ),
        rule(
            "!has(self.autoscaling) || self.replicas == 1",
            "replicas and autoscaling are mutually exclusive: "
            "with autoscaling the HPA owns the replica count, so leave replicas unset",
            ".replicas",
        ),
        rule(
            "!has(self.autoscaling) || !has(self.rollout) || !has(self.rollout.canary.capacity)"
            " || !has(self.rollout.canary.capacity.mode)"
            " || self.rollout.canary.capacity.mode == 'surge'",
            "rollout.canary.capacity.mode reuse needs fixed replicas: with autoscaling the HPA "
            "owns stable's replica count, so the operator cannot move replicas out of it",
            ".rollout.canary.capacity.mode",
        ),
    )

    model: ModelSource
    """The model to serve."""
    runtime: Runtime
    """The serving container."""
    replicas: int = Field(default=1, ge=1, le=1000)
    """Fixed replica count when autoscaling is absent; the scale subresource's spec. Always
    present (defaulted), so GET /scale works for every model; leave it unset with
    autoscaling."""
    autoscaling: Autoscaling | None = None
    """HPA settings; when present the HPA owns the replica count."""
    scheduling: Scheduling = Field(default_factory=Scheduling)
    """Extra placement constraints."""
    rollout: Rollout | None = None
    """Canary rollout with metric analysis; absent: a new revision replaces the stable one
    as soon as all its replicas are ready."""
    routing: Literal["default", "leastQueue"] = "default"
    """default: clients reach the pods through the model's Service (kube-proxy picks one at
    random) whenever the model has a Ready replica. leastQueue: the kinfer activator stays
    in the path and sends each request to the replica with the fewest requests in flight,
    within the revision the canary weight chose."""

    @model_validator(mode="after")
    def _cache_needs_determinism(self) -> InferenceModelSpec:
        # Mirrors the CEL rule, for objects an older CRD let through.
        if self.runtime.response_cache is not None and not self.model.deterministic:
            raise ValueError("responseCache needs spec.model.deterministic: true")
        return self

    @model_validator(mode="after")
    def _replicas_or_autoscaling(self) -> InferenceModelSpec:
        # Mirrors the CEL rule, for objects an older CRD let through.
        if self.autoscaling is not None and self.replicas != 1:
            raise ValueError("replicas and autoscaling are mutually exclusive")
        if (
            self.autoscaling is not None
            and self.rollout is not None
            and self.rollout.canary.capacity.mode == "reuse"
        ):
            raise ValueError("rollout.canary.capacity.mode reuse needs fixed replicas")
        return self

    @property
    def gpu_count(self) -> int:
        """GPUs per replica, 0 for CPU-only serving."""
        return self.runtime.gpu.count if self.runtime.gpu else 0

    @property
    def scales_to_zero(self) -> bool:
        """spec.autoscaling.minReplicas is 0."""
        return self.autoscaling is not None and self.autoscaling.scales_to_zero

    @property
    def idle_seconds(self) -> int:
        """Seconds without requests before the model goes to zero."""
        idle = self.autoscaling.idle_seconds if self.autoscaling else None
        return idle if idle is not None else DEFAULT_IDLE_SECONDS

    @property
    def target_concurrency(self) -> int:
        """Requests per replica for wake-ups and releases: the spec's, else the largest batch."""
        given = self.autoscaling.target_concurrency if self.autoscaling else None
        return given if given is not None else self.runtime.batching.max_batch_size

    @property
    def max_hold_seconds(self) -> int:
        """How long the activator holds a request for this model."""
        given = self.autoscaling.max_hold_seconds if self.autoscaling else None
        if given is not None:
            return given
        return self.runtime.startup_timeout_seconds + HOLD_MARGIN_SECONDS

    @property
    def max_held_requests(self) -> int:
        """Most requests the activator holds for this model."""
        return self.autoscaling.max_held_requests if self.autoscaling else 1000

    @property
    def fixed_replicas(self) -> int:
        """Replica count when the HPA does not own it."""
        return self.replicas
