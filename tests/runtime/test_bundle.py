"""Model bundles: the manifest, safe and atomic extraction, every source, external data, and a
TorchScript signature declared in the manifest."""

import hashlib
import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from kinfer_runtime.backends import BackendOptions, open_backend
from kinfer_runtime.bundle import ExtractLimits, extract_archive, open_bundle
from kinfer_runtime.errors import ModelLoadError
from kinfer_runtime.sources import cache_entry, resolve_model
from onnx import TensorProto, helper, numpy_helper

MANIFEST = b"model: model.onnx\nlabels: labels.txt\n"


def _tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A tiny batchable ONNX model: y = x * 2."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        "double",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(np.full(3, 2.0, dtype=np.float32), "two")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _good_members(model_bytes: bytes) -> list[tarfile.TarInfo | tuple[str, bytes]]:
    return [("kinfer.yaml", MANIFEST), ("model.onnx", model_bytes), ("labels.txt", b"a\nb\n\n")]


# --- the manifest ----------------------------------------------------------------------------


def test_bundle_directory_opens_with_labels_and_format(tmp_path: Path, model_bytes: bytes):
    (tmp_path / "kinfer.yaml").write_bytes(MANIFEST)
    (tmp_path / "model.onnx").write_bytes(model_bytes)
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    bundle = open_bundle(tmp_path, tmp_path / "cache")
    assert bundle.model_path == tmp_path / "model.onnx"
    assert bundle.format == "onnx" and bundle.labels == ("cat", "dog")
    assert bundle.root == tmp_path and bundle.signature is None


def test_a_bare_model_file_is_still_a_model(tmp_path: Path, model_bytes: bytes) -> None:
    (tmp_path / "m.onnx").write_bytes(model_bytes)
    bundle = open_bundle(tmp_path / "m.onnx", tmp_path)
    assert bundle.root is None and bundle.format == "onnx"


@pytest.mark.parametrize(
    ("manifest", "reason"),
    [
        ("model: ../outside.onnx\n", "relative path inside the bundle"),
        ("model: /etc/passwd\n", "relative path inside the bundle"),
        ("model: model.onnx\nlabels: missing.txt\n", "labels 'missing.txt' is not a file"),
        ("model: model.onnx\nextra: 1\n", "extra: Extra inputs are not permitted"),
        ("model: model.onnx\nformat: tensorflow\n", "format"),
        ("model: model.onnx\nhandler: 'h.py'\n", "handler: String should match pattern"),
        ("model: [unclosed\n", "not valid YAML"),
        ("model: model.onnx\nexternalData: [w.bin]\n", "externalData 'w.bin' is not a file"),
        (
            "model: model.onnx\nsignature:\n  inputs: [{name: x, datatype: FP32, shape: [-1]}]\n"
            "  outputs: [{name: y, datatype: FP32, shape: [-1]}]\n",
            "signature applies to torchscript models only",
        ),
    ],
)
def test_invalid_manifests_name_the_field(
    tmp_path: Path, model_bytes: bytes, manifest: str, reason: str
) -> None:
    (tmp_path / "kinfer.yaml").write_text(manifest)
    (tmp_path / "model.onnx").write_bytes(model_bytes)
    with pytest.raises(ModelLoadError, match=r"kinfer\.yaml") as caught:
        open_bundle(tmp_path, tmp_path / "cache")
    assert reason in str(caught.value)


def test_a_manifest_model_symlinked_out_of_the_bundle_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "secret.onnx"
    outside.write_bytes(b"x")
    root = tmp_path / "b"
    root.mkdir()
    (root / "kinfer.yaml").write_text("model: model.onnx\n")
    (root / "model.onnx").symlink_to(outside)
    with pytest.raises(ModelLoadError, match="leaves the bundle"):
        open_bundle(root, tmp_path / "cache")


def test_an_oversized_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "kinfer.yaml").write_text("model: m.onnx\n" + "#" * 70_000)
    with pytest.raises(ModelLoadError, match="larger than"):
        open_bundle(tmp_path, tmp_path / "cache")


# --- extraction ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tar.gz", "zip", "tar.gz-in-a-directory"])
def test_archives_extract_into_a_bundle(tmp_path: Path, model_bytes: bytes, kind: str) -> None:
    members = _good_members(model_bytes)
    if kind == "zip":
        archive = tmp_path / "b.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for name, data in members:  # type: ignore[misc]
                zf.writestr(name, data)
    elif kind == "tar.gz":
        archive = _tar(tmp_path / "b.tar.gz", members)
    else:
        nested = [(f"mybundle/{n}", d) for n, d in members]  # type: ignore[misc]
        archive = _tar(tmp_path / "b.tgz", nested)  # type: ignore[arg-type]
    bundle = open_bundle(archive, tmp_path / "cache")
    assert bundle.model_path.read_bytes() == model_bytes and bundle.labels == ("a", "b")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()[:32]
    assert (tmp_path / "cache" / "bundles" / digest) in bundle.model_path.parents


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (("../evil", b"x"), "would leave the bundle"),
        (("a/../../evil", b"x"), "would leave the bundle"),
        (("/abs/evil", b"x"), "would leave the bundle"),
        (_link("link", "/etc/passwd", tarfile.SYMTYPE), "is a link"),
        (_link("inside", "model.onnx", tarfile.SYMTYPE), "is a link"),
        (_link("hard", "../../etc/passwd", tarfile.LNKTYPE), "is a link"),
        (_link("fifo", "", tarfile.FIFOTYPE), "is a special file"),
        (_link("dev", "", tarfile.CHRTYPE), "is a special file"),
    ],
)
def test_unsafe_tar_members_are_refused_and_leave_nothing(
    tmp_path: Path, model_bytes: bytes, member: tarfile.TarInfo | tuple[str, bytes], reason: str
) -> None:
    archive = _tar(tmp_path / "b.tar.gz", [*_good_members(model_bytes), member])
    cache = tmp_path / "cache"
    with pytest.raises(ModelLoadError, match=reason):
        open_bundle(archive, cache)
    assert list((cache / "bundles").iterdir()) == []  # no partial, no target
    assert not (tmp_path / "evil").exists()


def test_zip_symlinks_and_traversal_are_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    for info, reason in ((link, "is a link"), (zipfile.ZipInfo("../evil"), "leave the bundle")):
        archive = tmp_path / "b.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr(info, "/etc/passwd")
        with pytest.raises(ModelLoadError, match=reason):
            open_bundle(archive, tmp_path / "cache")


@pytest.mark.parametrize(
    ("limits", "reason"),
    [
        (ExtractLimits(max_file_bytes=1000), "exceeds 1000 bytes"),
        (ExtractLimits(max_total_bytes=150), "archive exceeds 150 bytes extracted"),
        (ExtractLimits(max_members=2), "more than 2 members"),
    ],
)
def test_extraction_limits(tmp_path: Path, limits: ExtractLimits, reason: str) -> None:
    members: list[tarfile.TarInfo | tuple[str, bytes]] = [
        ("a", b"x" * 100),
        ("b", b"y" * 100),
        ("c", b"z" * 2000),
    ]
    archive = _tar(tmp_path / "b.tar.gz", members)
    with pytest.raises(ModelLoadError, match=reason):
        extract_archive(archive, tmp_path / "cache", limits)
    assert list((tmp_path / "cache" / "bundles").iterdir()) == []


def test_a_zip_lying_about_its_sizes_is_bounded_by_the_bytes_written(tmp_path: Path) -> None:
    archive = tmp_path / "b.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb", b"\0" * 200_000)
    with pytest.raises(ModelLoadError, match="exceeds 1000 bytes"):
        extract_archive(archive, tmp_path / "cache", ExtractLimits(max_file_bytes=1000))


def test_an_extracted_bundle_is_reused_and_a_corrupt_archive_is_a_load_error(
    tmp_path: Path, model_bytes: bytes
) -> None:
    archive = _tar(tmp_path / "b.tar.gz", _good_members(model_bytes))
    first = extract_archive(archive, tmp_path / "cache", ExtractLimits())
    (first / "marker").write_text("kept")
    assert extract_archive(archive, tmp_path / "cache", ExtractLimits()) == first
    assert (first / "marker").exists()
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ModelLoadError, match="not a readable tar archive"):
        extract_archive(bad, tmp_path / "cache", ExtractLimits())


# --- sources ---------------------------------------------------------------------------------


def test_a_bundle_directory_resolves_in_place(tmp_path: Path, model_bytes: bytes) -> None:
    (tmp_path / "kinfer.yaml").write_bytes(b"model: model.onnx\n")
    (tmp_path / "model.onnx").write_bytes(model_bytes)
    assert resolve_model(f"file://{tmp_path}", cache_dir=tmp_path / "c") == tmp_path
    with pytest.raises(ModelLoadError, match="sha256 pins archives"):
        resolve_model(str(tmp_path), cache_dir=tmp_path / "c", sha256="0" * 64)


def test_an_http_archive_with_sha256_downloads_verifies_and_extracts(
    model_http, tmp_path: Path, model_bytes: bytes
) -> None:
    data = _tar(tmp_path / "src.tar.gz", _good_members(model_bytes)).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    model_http.files["/bundles/digits.tar.gz"] = data
    url = model_http.url("/bundles/digits.tar.gz")
    path = resolve_model(url, cache_dir=tmp_path / "cache", sha256=digest)
    assert path.name == "digits.tar.gz"
    bundle = open_bundle(path, tmp_path / "cache")
    assert bundle.model_path.read_bytes() == model_bytes
    with pytest.raises(ModelLoadError, match="sha256 mismatch"):
        resolve_model(url, cache_dir=tmp_path / "other", sha256="1" * 64)


def test_an_archive_in_the_shared_cache_is_extracted_into_the_pods_own_cache(
    tmp_path: Path, model_bytes: bytes
) -> None:
    """The operator's model cache fills archives like files (same key); the runtime extracts
    the read-only shared copy into its own cache directory."""
    data = _tar(tmp_path / "src.tar.gz", _good_members(model_bytes)).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    url = "http://models.invalid/b.tar.gz"  # never contacted: the shared cache has it
    shared = cache_entry(url, tmp_path / "shared", digest)
    shared.parent.mkdir(parents=True)
    shared.write_bytes(data)
    os.chmod(shared.parent, 0o555)
    try:
        path = resolve_model(
            url, cache_dir=tmp_path / "own", sha256=digest, shared_cache_dir=tmp_path / "shared"
        )
        assert path == shared
        bundle = open_bundle(path, tmp_path / "own")
        assert (tmp_path / "own" / "bundles") in bundle.model_path.parents
    finally:
        os.chmod(shared.parent, 0o755)


# --- loading ---------------------------------------------------------------------------------


def test_onnx_with_external_data_loads_from_a_bundle_archive(tmp_path: Path) -> None:
    weights = np.arange(12, dtype=np.float32).reshape(3, 4)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "ext",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    src = tmp_path / "src"
    src.mkdir()
    onnx.save_model(
        model,
        str(src / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.onnx.data",
        size_threshold=0,
    )
    assert (src / "model.onnx.data").stat().st_size == weights.nbytes
    (src / "kinfer.yaml").write_text("model: model.onnx\nexternalData: [model.onnx.data]\n")
    archive = tmp_path / "ext.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for p in src.iterdir():
            tar.add(p, arcname=p.name)
    bundle = open_bundle(archive, tmp_path / "cache")
    backend = open_backend(bundle.model_path, bundle.format, BackendOptions(device="cpu"))
    backend.load()
    x = np.ones((2, 3), dtype=np.float32)
    np.testing.assert_array_equal(backend.infer({"x": x})["y"], x @ weights)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # TorchScript is deprecated upstream
def test_torchscript_signature_from_the_manifest(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    module = torch.jit.script(torch.nn.Linear(3, 2))
    torch.jit.save(module, str(tmp_path / "model.pt"))  # no kinfer_signature.json inside
    (tmp_path / "kinfer.yaml").write_text(
        "model: model.pt\nsignature:\n"
        "  inputs: [{name: features, datatype: FP32, shape: [-1, 3]}]\n"
        "  outputs: [{name: scores, datatype: FP32, shape: [-1, 2]}]\n"
    )
    bundle = open_bundle(tmp_path, tmp_path / "cache")
    assert bundle.format == "torchscript" and bundle.signature is not None
    options = BackendOptions(device="cpu", signature=bundle.signature)
    backend = open_backend(bundle.model_path, bundle.format, options)
    backend.load()
    assert [t.name for t in backend.signature.inputs] == ["features"]
    out = backend.infer({"features": np.ones((2, 3), dtype=np.float32)})
    assert out["scores"].shape == (2, 2)
    bare = open_backend(bundle.model_path, "torchscript", BackendOptions(device="cpu"))
    with pytest.raises(ModelLoadError, match="or declare the signature in a bundle"):
        bare.load()
