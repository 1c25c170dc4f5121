"""An in-cluster HTTP server for model files, run by the real-node e2e lane in a pod.

Serves the files baked into the runtime image under /models. `/slow/<path>` sends the same
file at about `KINFER_SLOW_BYTES_PER_S` bytes per second: a model source slower than the
startup budget, as a congested object store would be. Standard library only: it runs with
the image's Python, mounted from a ConfigMap.
"""

from __future__ import annotations

import http.server
import os
import time
from pathlib import Path

ROOT = Path("/models")
SLOW_BYTES_PER_S = int(os.environ.get("KINFER_SLOW_BYTES_PER_S", "20000"))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        slow = self.path.startswith("/slow/")
        relative = self.path.removeprefix("/slow/" if slow else "/").split("?")[0]
        path = (ROOT / relative).resolve()
        if ROOT not in path.parents or not path.is_file():
            self.send_error(404, f"no model file {relative}")
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not slow:
            self.wfile.write(data)
            return
        chunk = max(1, SLOW_BYTES_PER_S // 10)
        for start in range(0, len(data), chunk):
            self.wfile.write(data[start : start + chunk])
            self.wfile.flush()
            time.sleep(0.1)


if __name__ == "__main__":
    http.server.ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
