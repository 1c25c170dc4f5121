"""Model bundles: a directory or an archive (.tar.gz, .tgz, .tar, .zip) holding a model file,
its external data, a labels file, a handler and a `kinfer.yaml` manifest that names them.

Archives are extracted safely: only regular files and directories (no links of either kind, no
devices or FIFOs), member names relative and free of `..`, bounded in member count, per-file
size and total size (counted on the bytes actually written, not the sizes the archive claims).
Extraction goes into a hidden directory beside the target and is renamed into place only when
complete, so a crash never leaves a half bundle that looks whole. The target is keyed by the
archive's sha256: a restarted pod reuses its extraction.
"""

import contextlib
import hashlib
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Annotated, Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kinfer_runtime.backends import ModelFormat, ModelSignature, TensorSpec, detect_format
from kinfer_runtime.errors import ModelLoadError
from kinfer_runtime.sources import BUNDLE_MANIFEST as MANIFEST

__all__ = [
    "ARCHIVE_SUFFIXES",
    "MANIFEST",
    "Bundle",
    "BundleManifest",
    "ExtractLimits",
    "extract_archive",
    "is_archive",
    "open_bundle",
]

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES: Final = (".tar.gz", ".tgz", ".tar", ".zip")
_MANIFEST_MAX_BYTES: Final = 64 * 1024
_CHUNK: Final = 1 << 20

_RelPath = Annotated[str, Field(min_length=1, max_length=255)]
_Name = Annotated[str, Field(min_length=1, max_length=128)]


def _relative(value: str) -> str:
    parts = PurePosixPath(value).parts
    if value.startswith(("/", "\\")) or ".." in parts or "\\" in value or not parts:
        raise ValueError(f"{value!r} must be a relative path inside the bundle")
    return value


class TensorDecl(BaseModel):
    """One tensor of a declared signature; -1 marks a dynamic dimension (the first one for
    batching)."""

    model_config = ConfigDict(extra="forbid")
    name: _Name
    datatype: Literal[
        "BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BF16"
    ]
    shape: list[Annotated[int, Field(ge=-1, le=1 << 31)]] = Field(max_length=8)


class SignatureDecl(BaseModel):
    """Input and output names of a TorchScript model, instead of an embedded
    kinfer_signature.json."""

    model_config = ConfigDict(extra="forbid")
    inputs: list[TensorDecl] = Field(min_length=1, max_length=64)
    outputs: list[TensorDecl] = Field(min_length=1, max_length=64)

    def to_signature(self) -> ModelSignature:
        def specs(decls: list[TensorDecl]) -> tuple[TensorSpec, ...]:
            return tuple(TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in decls)

        return ModelSignature(specs(self.inputs), specs(self.outputs))


class BundleManifest(BaseModel):
    """`kinfer.yaml`: every path is relative to the bundle's root."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    model: _RelPath
    """The model file (model.onnx, model.pt, model.pt2)."""
    format: ModelFormat | None = None
    """onnx, torchscript or torch-export; from the model file's extension when left out."""
    external_data: list[_RelPath] = Field(
        default_factory=list, max_length=1024, alias="externalData"
    )
    """ONNX external data files, checked to exist (ONNX Runtime reads them beside the model)."""
    labels: _RelPath | None = None
    """A text file with one class label per line."""
    handler: Annotated[str, Field(max_length=255, pattern=r"^[\w./-]+:[A-Za-z_]\w*$")] | None = None
    """`file.py:Class` (a file in the bundle) or `package.module:Class` (importable)."""
    handler_options: dict[str, Any] = Field(
        default_factory=dict, max_length=64, alias="handlerOptions"
    )
    """Passed to the handler as `context.options`."""
    signature: SignatureDecl | None = None
    """TorchScript only: the tensor signature, when the file embeds no kinfer_signature.json."""

    @field_validator("model", "labels", "external_data", mode="after")
    @classmethod
    def _inside(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_relative(v) for v in value]
        return None if value is None else _relative(value)


@dataclass(frozen=True)
class Bundle:
    """A model ready to open: a bare file (root None) or a bundle directory."""

    model_path: Path
    format: ModelFormat
    root: Path | None = None
    manifest: BundleManifest | None = None
    labels: tuple[str, ...] = ()

    @property
    def signature(self) -> ModelSignature | None:
        if self.manifest is None or self.manifest.signature is None:
            return None
        return self.manifest.signature.to_signature()


@dataclass(frozen=True)
class ExtractLimits:
    max_total_bytes: int = 64 << 30
    max_file_bytes: int = 64 << 30
    max_members: int = 10_000


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _load_manifest(root: Path) -> BundleManifest:
    path = root / MANIFEST
    if path.stat().st_size > _MANIFEST_MAX_BYTES:
        raise ModelLoadError(f"{MANIFEST} is larger than {_MANIFEST_MAX_BYTES} bytes")
    try:
        doc = yaml.safe_load(path.read_text())
        return BundleManifest.model_validate(doc)
    except yaml.YAMLError as exc:
        raise ModelLoadError(f"{MANIFEST} is not valid YAML: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise ModelLoadError(f"{MANIFEST}: {where}: {first['msg']}") from exc


def _member(root: Path, rel: str, what: str) -> Path:
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ModelLoadError(f"{MANIFEST}: {what} {rel!r} leaves the bundle")
    if not path.is_file():
        raise ModelLoadError(f"{MANIFEST}: {what} {rel!r} is not a file in the bundle")
    return path


def _read_labels(path: Path) -> tuple[str, ...]:
    if path.stat().st_size > 16 << 20:
        raise ModelLoadError(f"labels file {path.name} is larger than 16 MiB")
    return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())


def open_bundle(
    path: Path,
    extract_dir: Path,
    limits: ExtractLimits | None = None,
    fmt: ModelFormat | None = None,
) -> Bundle:
    """The model behind a resolved source: a bare model file, a bundle directory, or an archive
    (extracted under `extract_dir`). `fmt` overrides a bare file's extension."""
    if is_archive(path):
        path = _single_root(extract_archive(path, extract_dir, limits or ExtractLimits()))
    if not path.is_dir():
        return Bundle(path, fmt or detect_format(path.name))
    if not (path / MANIFEST).is_file():
        raise ModelLoadError(f"bundle {path.name} has no {MANIFEST}")
    manifest = _load_manifest(path)
    model = _member(path, manifest.model, "model")
    for extra in manifest.external_data:
        _member(path, extra, "externalData")
    labels = _read_labels(_member(path, manifest.labels, "labels")) if manifest.labels else ()
    # The manifest says what its model is; KINFER_MODEL_FORMAT (the operator always sets
    # spec.model.format, "onnx" by default) applies to bare files only.
    chosen = manifest.format or detect_format(model.name)
    if manifest.signature is not None and chosen != "torchscript":
        raise ModelLoadError(f"{MANIFEST}: signature applies to torchscript models only")
    return Bundle(model, chosen, path, manifest, labels)


def _single_root(path: Path) -> Path:
    # `tar czf b.tar.gz mybundle/` puts everything under one directory: allow that too.
    if (path / MANIFEST).exists():
        return path
    entries = list(path.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / MANIFEST).is_file():
        return entries[0]
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _safe_name(name: str) -> PurePosixPath:
    rel = PurePosixPath(name)
    if (
        name.startswith(("/", "\\"))
        or "\\" in name
        or ".." in rel.parts
        or (rel.parts and rel.parts[0].endswith(":"))
    ):
        raise ModelLoadError(f"archive member {name!r} would leave the bundle")
    return rel


class _Budget:
    def __init__(self, limits: ExtractLimits) -> None:
        self.limits = limits
        self.total = 0
        self.members = 0

    def count(self) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise ModelLoadError(f"archive has more than {self.limits.max_members} members")

    def copy(self, src: IO[bytes], dest: Path, name: str) -> None:
        written = 0
        with dest.open("xb") as out:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                self.total += len(chunk)
                if written > self.limits.max_file_bytes:
                    raise ModelLoadError(
                        f"archive member {name!r} exceeds {self.limits.max_file_bytes} bytes"
                    )
                if self.total > self.limits.max_total_bytes:
                    raise ModelLoadError(
                        f"archive exceeds {self.limits.max_total_bytes} bytes extracted"
                    )
                out.write(chunk)


def _place(root: Path, rel: PurePosixPath) -> Path:
    dest = root.joinpath(*rel.parts)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.resolve().is_relative_to(root.resolve()):  # defence in depth
        raise ModelLoadError(f"archive member {str(rel)!r} would leave the bundle")
    return dest


def _tar_members(archive: Path) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    try:
        with tarfile.open(archive, "r:*") as tar:
            for info in tar:
                yield tar, info
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ModelLoadError(f"{archive.name} is not a readable tar archive: {exc}") from exc


def _extract_tar(archive: Path, root: Path, budget: _Budget) -> None:
    for tar, info in _tar_members(archive):
        budget.count()
        rel = _safe_name(info.name)
        if info.isdir():
            _place(root, rel).mkdir(exist_ok=True)
            continue
        if not info.isreg():
            kind = "link" if info.issym() or info.islnk() else "special file"
            raise ModelLoadError(f"archive member {info.name!r} is a {kind}; bundles hold files")
        if info.size > budget.limits.max_file_bytes:
            raise ModelLoadError(
                f"archive member {info.name!r} exceeds {budget.limits.max_file_bytes} bytes"
            )
        src = tar.extractfile(info)
        assert src is not None
        with src:
            budget.copy(src, _place(root, rel), info.name)


def _extract_zip(archive: Path, root: Path, budget: _Budget) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                budget.count()
                rel = _safe_name(info.filename)
                mode = info.external_attr >> 16
                if info.is_dir():
                    _place(root, rel).mkdir(exist_ok=True)
                    continue
                if stat.S_IFMT(mode) and not stat.S_ISREG(mode):  # 0: no type recorded
                    kind = "link" if stat.S_ISLNK(mode) else "special file"
                    raise ModelLoadError(
                        f"archive member {info.filename!r} is a {kind}; bundles hold files"
                    )
                with zf.open(info) as src:
                    budget.copy(src, _place(root, rel), info.filename)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as exc:
        raise ModelLoadError(f"{archive.name} is not a readable zip archive: {exc}") from exc


def extract_archive(archive: Path, extract_dir: Path, limits: ExtractLimits) -> Path:
    """The archive's contents as a directory under `extract_dir`, extracted at most once."""
    target = extract_dir / "bundles" / _sha256(archive)[:32]
    if target.is_dir():
        log.info("using extracted bundle %s", target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        budget = _Budget(limits)
        if archive.name.lower().endswith(".zip"):
            _extract_zip(archive, partial, budget)
        else:
            _extract_tar(archive, partial, budget)
        partial.chmod(0o755)
        try:
            os.rename(partial, target)
        except OSError:
            if not target.is_dir():  # another process renamed its own copy first: use that
                raise
        log.info("extracted %s (%d members, %d bytes)", archive.name, budget.members, budget.total)
        return target
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(partial)
