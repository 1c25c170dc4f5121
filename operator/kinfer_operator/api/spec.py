"""InferenceModel spec: what a user commits to git.

Every field here is declarative; a manifest must describe the whole desired state. Rules the
API server can enforce live next to the fields (bounds, enums, patterns, CEL), so an invalid
manifest is rejected at `kubectl apply` time with a message naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema

from kinfer_operator.api._base import ApiModel, cel, rule

__all__ = [
    "GPU",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "Autoscaling",
    "AutoscalingMetric",
    "Batching",
    "InferenceModelSpec",
    "ModelSource",
    "Resources",
    "Runtime",
    "Scheduling",
    "SecretKeyReference",
    "Toleration",
]

GROUP = "serving.kinfer.io"
VERSION = "v1alpha1"
KIND = "InferenceModel"
PLURAL = "inferencemodels"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"

Quantity = Annotated[
    int | str,
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "maxLength": 64,
            "x-kubernetes-validations": [
                {
                    "rule": "type(self) == int || isQuantity(self)",
                    "message": "must be a Kubernetes quantity such as 500m, 2 or 8Gi",
                }
            ],
        }
    ),
]
"""A Kubernetes resource quantity; the API server checks the format with CEL."""

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
            "!has(self.credentials) || self.uri.startsWith('http')",
            "credentials apply only to http:// and https:// model uris",
            ".credentials",
        ),
    )

    uri: str = Field(min_length=1, max_length=2048, pattern=r"^(file:///|pvc://|https?://)\S+$")
    """Model file location: file:///path (baked into the image or mounted), pvc://claim/path
    (mounted read-only), or http(s):// (downloaded by the runtime into an emptyDir cache)."""
    format: Literal["onnx", "torchscript", "torch-export"] = "onnx"
    """Serialization format: onnx (ONNX Runtime), torchscript (.pt) or torch-export (.pt2)."""
    version: str = Field(min_length=1, max_length=63, pattern=LABEL_VALUE)
    """Free-form model version label, shown in status, pod labels and runtime metrics."""
    sha256: str | None = Field(default=None, pattern=r"^[a-f0-9]{64}$")
    """Expected SHA-256 of the model file; a mismatch fails the load instead of serving it."""
    credentials: SecretKeyReference | None = None
    """Secret key holding the HTTP Authorization header value used to download the model."""


class GPU(ApiModel):
    """GPUs per replica. Omit, or set count 0, to serve on the CPU."""

    count: int = Field(default=1, ge=0, le=64)
    """Whole GPUs each replica requests as a resource limit; 0 means CPU only."""
    product: str | None = Field(default=None, max_length=63, pattern=LABEL_VALUE)
    """Only schedule onto nodes whose product label equals this, e.g. NVIDIA-H100-80GB-HBM3."""
    resource_name: str = Field(default="nvidia.com/gpu", min_length=1, max_length=253)
    """Extended resource name of the device plugin; also the tolerated taint key.
    Change it for other vendors, e.g. amd.com/gpu."""
    product_label: str = Field(default="nvidia.com/gpu.product", min_length=1, max_length=253)
    """Node label that carries the GPU product name (set by GPU feature discovery)."""


class Resources(ApiModel):
    """CPU and memory for each runtime container. GPUs are set under runtime.gpu."""

    model_config = cel(
        rule(
            "(!has(self.requests) || !self.requests.exists(k, k.contains('gpu'))) && "
            "(!has(self.limits) || !self.limits.exists(k, k.contains('gpu')))",
            "set GPUs with spec.runtime.gpu, not as a raw resource",
        ),
    )

    requests: dict[str, Quantity] = Field(default_factory=dict, max_length=16)
    """Minimum resources the scheduler reserves, e.g. {cpu: "2", memory: 8Gi}."""
    limits: dict[str, Quantity] = Field(default_factory=dict, max_length=16)
    """Maximum resources the container may use."""


class Batching(ApiModel):
    """Dynamic batching in the runtime: requests arriving together run as one batch."""

    max_batch_size: int = Field(default=32, ge=1, le=4096)
    """Largest batch the runtime forms; also the warm-up sizes' upper bound."""
    max_queue_delay_microseconds: int = Field(default=2000, ge=0, le=10_000_000)
    """How long the first request of a batch may wait for others to join."""
    max_queue_size: int = Field(default=256, ge=1, le=1_000_000)
    """Requests allowed to wait; beyond it the runtime answers 503 with Retry-After."""


class EnvVar(ApiModel):
    """An extra environment variable for the runtime container."""

    name: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    """Variable name."""
    value: str = Field(default="", max_length=32768)
    """Variable value."""


class Runtime(ApiModel):
    """The serving container: image, accelerators, resources and batching."""

    image: str = Field(min_length=1, max_length=1024, pattern=r"^\S+$")
    """kinfer runtime image (or a compatible one that speaks the Open Inference Protocol)."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """When the kubelet pulls the image."""
    image_pull_secrets: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default_factory=list, max_length=16
    )
    """Names of Secrets used to pull the image."""
    gpu: GPU | None = None
    """Accelerators per replica; omit for CPU-only serving."""
    resources: Resources = Field(default_factory=Resources)
    """CPU and memory requests and limits."""
    batching: Batching = Field(default_factory=Batching)
    """Dynamic batching settings passed to the runtime."""
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    """Compute precision for PyTorch models on GPU; ONNX models run as exported."""
    env: list[EnvVar] = Field(default_factory=list, max_length=64)
    """Extra environment variables, e.g. KINFER_REQUEST_TIMEOUT_S."""
    startup_timeout_seconds: int = Field(default=600, ge=30, le=7200)
    """Budget to download, load and warm up the model; past it the replica counts as failed."""
    termination_grace_period_seconds: int = Field(default=60, ge=5, le=3600)
    """Time for a stopping replica to drain in-flight requests."""
    service_account_name: str | None = Field(default=None, max_length=253)
    """ServiceAccount the runtime pods run as; the namespace default when unset."""


class Toleration(ApiModel):
    """A pod toleration (subset of core/v1 Toleration)."""

    key: str | None = Field(default=None, max_length=316)
    """Taint key the toleration matches; empty with operator Exists matches all."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """How key and value are compared."""
    value: str | None = Field(default=None, max_length=63)
    """Taint value for operator Equal."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; empty matches all effects."""
    toleration_seconds: int | None = Field(default=None, ge=0)
    """For NoExecute: how long the pod stays bound after the taint appears."""


class Scheduling(ApiModel):
    """Where runtime pods may run, on top of the GPU placement kinfer adds itself."""

    node_selector: dict[str, str] = Field(default_factory=dict, max_length=32)
    """Extra node labels a node must have."""
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    """Extra taints the pods tolerate (the GPU taint is tolerated automatically)."""
    affinity: FreeformObject | None = None
    """A core/v1 Affinity, passed through unchanged."""
    priority_class_name: str | None = Field(default=None, max_length=253)
    """PriorityClass of the runtime pods."""


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


class Autoscaling(ApiModel):
    """Horizontal autoscaling of the serving replicas with an autoscaling/v2 HPA."""

    model_config = cel(
        rule(
            "self.minReplicas >= 1",
            "minReplicas must be at least 1: scale to zero is out of scope, "
            "because a GPU replica takes minutes to start and load its model",
            ".minReplicas",
        ),
        rule(
            "self.minReplicas <= self.maxReplicas",
            "minReplicas must be less than or equal to maxReplicas",
            ".minReplicas",
        ),
    )

    # No schema minimum: the CEL rule above rejects 0 with a message that says why.
    min_replicas: int = Field(default=1, le=1000)
    """Fewest replicas; at least 1."""
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


class InferenceModelSpec(ApiModel):
    """Desired state of a served model."""

    model_config = cel(
        rule(
            "!(has(self.replicas) && has(self.autoscaling))",
            "replicas and autoscaling are mutually exclusive: "
            "with autoscaling the HPA owns the replica count",
            ".replicas",
        ),
    )

    model: ModelSource
    """The model to serve."""
    runtime: Runtime
    """The serving container."""
    replicas: int | None = Field(default=None, ge=1, le=1000)
    """Fixed replica count when autoscaling is absent (default 1); the scale subresource."""
    autoscaling: Autoscaling | None = None
    """HPA settings; when present the HPA owns the replica count."""
    scheduling: Scheduling = Field(default_factory=Scheduling)
    """Extra placement constraints."""

    @property
    def gpu_count(self) -> int:
        """GPUs per replica, 0 for CPU-only serving."""
        return self.runtime.gpu.count if self.runtime.gpu else 0

    @property
    def fixed_replicas(self) -> int:
        """Replica count when the HPA does not own it."""
        return self.replicas if self.replicas is not None else 1
