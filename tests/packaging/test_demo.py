"""`make demo` (e2e/demo.sh) serves the digits bundle from a volume on the real node and prints a
label for a real image before and after the canary (e2e/demo_digits.py). The demo needs a
cluster; these read the script and run the client against a stand-in server."""

from __future__ import annotations

import json
import re
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import demo_digits
import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO = (REPO / "e2e" / "demo.sh").read_text()


def _lines(pattern: str) -> list[str]:
    return [line for line in DEMO.splitlines() if re.search(pattern, line)]


def test_the_demo_model_is_the_digits_bundle_on_its_claim() -> None:
    (uri,) = re.findall(r'^  model: \{uri: "([^"]+)", version: "\$2"\}$', DEMO, re.M)
    assert uri == demo_digits.URI == "pvc://digits/digits.tar.gz"
    assert "file:///models/demo" not in DEMO


def test_the_digits_volume_lives_in_the_real_nodes_state_dir() -> None:
    """Host hygiene: the one thing the demo writes on the host is under the directory that
    `e2e/node.sh down` removes, and `make demo-down` removes it besides."""
    node_default = re.search(r"^NODE_DIR=(\$\{KINFER_NODE_DIR:-[^}]+\})$", DEMO, re.M)
    assert node_default is not None
    node_sh = (REPO / "e2e" / "node.sh").read_text()
    assert f"NODE_DIR={node_default.group(1)}\n" in node_sh
    assert re.search(r'^    rm -rf "\$NODE_DIR"$', node_sh, re.M)
    assert re.search(r"^DIGITS_DIR=\$NODE_DIR/volumes/\$NS-digits$", DEMO, re.M)
    (prepare,) = _lines(r"demo_digits\.py prepare")
    assert prepare == '.venv/bin/python e2e/demo_digits.py prepare "$DIGITS_DIR" "$NS"'
    down = DEMO[DEMO.index("if [[ ${1:-up} == down ]]") :]
    down = down[: down.index("\nfi\n")]
    assert "bash e2e/cluster.sh down" in down and 'rm -rf -- "$DIGITS_DIR"' in down
    # It refuses to run (and write) without the real node's state dir.
    assert "-f $NODE_DIR/net.env ]]" in DEMO


def test_a_label_for_a_real_image_before_and_after_the_canary_and_under_load() -> None:
    once = '.venv/bin/python e2e/demo_digits.py "$URL" demo "$DIGITS_DIR" once'
    load = '.venv/bin/python e2e/demo_digits.py "$URL" demo "$DIGITS_DIR" load 600'
    bump = DEMO.index("manifest 2 | kubectl apply")
    assert DEMO.index(once) < DEMO.index(load) < bump < DEMO.rindex(once)
    assert DEMO.count(once) == 2
    assert DEMO.index("demo_digits.py prepare") < DEMO.index("manifest 1 | kubectl apply")
    assert "demo_client" not in DEMO


def test_make_demo_has_the_packages_that_train_the_bundle() -> None:
    """The demo trains with torch and scikit-learn (dev extra) in .venv, which `demo` needs."""
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo: venv\b", makefile, re.M)
    assert re.search(r"venv\.sh \$\(VENV\) \S*\btorch\b", makefile)
    assert re.search(r"venv\.sh \$\(VENV\) \S*\bdev\b", makefile)
    pyproject = (REPO / "pyproject.toml").read_text()
    dev = pyproject[pyproject.index("\ndev = [") :]
    assert '"scikit-learn==' in dev[: dev.index("\n]")]


def test_the_volume_binds_the_directory_read_only_to_the_claim(tmp_path: Path) -> None:
    items = demo_digits.volume(tmp_path, "kinfer-demo")["items"]
    pv, pvc = items
    assert pv["kind"] == "PersistentVolume" and pv["metadata"]["name"] == "kinfer-demo-digits"
    assert pv["spec"]["hostPath"] == {"path": str(tmp_path), "type": "Directory"}
    assert pv["spec"]["claimRef"] == {"namespace": "kinfer-demo", "name": "digits"}
    assert pv["spec"]["accessModes"] == pvc["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert pvc["metadata"] == {"name": "digits", "namespace": "kinfer-demo"}
    assert pvc["spec"]["volumeName"] == "kinfer-demo-digits"
    assert demo_digits.URI.startswith(f"pvc://{pvc['metadata']['name']}/")


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """Ten stand-in PNGs (their bytes name the digit) and truth.json, as e2e/digits.py lays
    them out."""
    (tmp_path / "images").mkdir()
    truth = {}
    for i in range(10):
        name = f"{i:04d}.png"
        (tmp_path / "images" / name).write_bytes(f"png of {(i + 1) % 10}".encode())
        truth[name] = str((i + 1) % 10)
    (tmp_path / "images" / "truth.json").write_text(json.dumps(truth))
    return tmp_path


@pytest.fixture
def server() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    """A stand-in runtime: .../predict answers the digit the PNG's bytes name, as version 2."""
    seen: list[tuple[str, str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.path, self.headers["Content-Type"], body))
            digit = body.decode()[-1]
            answer = {
                "model_name": "demo",
                "model_version": "2",
                "outputs": [
                    {
                        "name": "label",
                        "datatype": "BYTES",
                        "shape": [1, 3],
                        "data": [digit, "1", "7"],
                    },
                    {
                        "name": "score",
                        "datatype": "FP32",
                        "shape": [1, 3],
                        "data": [0.9984, 0.001, 0.0],
                    },
                ],
            }
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_once_posts_a_held_out_png_and_prints_its_label_truth_and_version(
    images: Path,
    server: tuple[str, list[tuple[str, str, bytes]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, seen = server
    assert demo_digits.main([url, "demo", str(images), "once"]) == 0
    assert seen == [("/v2/models/demo/predict", "image/png", b"png of 8")]
    out = capsys.readouterr().out.strip()
    pattern = (
        rf"POST {re.escape(url)}/v2/models/demo/predict \(0007\.png, a handwritten 8\) -> "
        r"model version 2: '8' \(0\.998\) in \d+\.\d ms"
    )
    assert re.fullmatch(pattern, out), out


def test_load_prints_answers_per_version_and_the_share_right_each_second(
    images: Path,
    server: tuple[str, list[tuple[str, str, bytes]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, seen = server
    previous = signal.getsignal(signal.SIGTERM)  # load stops on SIGTERM: pytest's comes back
    try:
        assert demo_digits.main([url, "demo", str(images), "load", "2.5"]) == 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    lines = capsys.readouterr().out.splitlines()
    assert lines
    for line in lines:
        assert re.fullmatch(r"\d\d:\d\d:\d\d answers/s by version: v2: \d+; correct 1\.000", line)
    assert {body for _, _, body in seen} <= {p.read_bytes() for p in images.glob("images/*.png")}
