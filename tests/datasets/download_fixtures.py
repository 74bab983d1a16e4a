"""A loopback image server and a fake hub cache for the download tests (nothing leaves 127.0.0.1)."""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def png_bytes(
    size: tuple[int, int] = (60, 40), color: tuple[int, ...] = (200, 90, 40), mode: str = "RGB"
) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, "PNG")
    return out.getvalue()


def jpeg_bytes(size: tuple[int, int] = (40, 70), color: tuple[int, int, int] = (30, 120, 220)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG")
    return out.getvalue()


@dataclass
class ImageServer:
    """Routes: /png/<n>, /jpg/<n> images; /missing/<n> 404; /slow/<n> sleeps past any test timeout;
    /corrupt/<n> 200 with bytes that are no image; /flaky/<n> 503 on the first request, then a PNG.
    `delay_s` delays every image. `requests` lists the paths asked for, in order."""

    base: str = ""
    requests: list[str] = field(default_factory=list)
    delay_s: float = 0.0
    served_missing: set[str] = field(default_factory=set)  # /missing/ paths that now answer 200
    _flaky_seen: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, route: str, name: str) -> str:
        return f"{self.base}/{route}/{name}"

    def answer(self, path: str) -> tuple[int, bytes, dict[str, str]]:
        with self._lock:
            self.requests.append(path)
            first_flaky = path.startswith("/flaky/") and path not in self._flaky_seen
            self._flaky_seen.add(path)
        route = path.split("/")[1]
        if route == "slow":
            time.sleep(3.0)
        elif self.delay_s:
            time.sleep(self.delay_s)
        if route == "png" or (route == "missing" and path in self.served_missing):
            return 200, png_bytes(), {"Content-Type": "image/png"}
        if route == "jpg":
            return 200, jpeg_bytes(), {"Content-Type": "image/jpeg"}
        if route == "flaky":
            return (
                (503, b"busy", {}) if first_flaky else (200, png_bytes((50, 50), (10, 10, 10, 0), "RGBA"), {})
            )
        if route == "corrupt":
            return 200, b"\x89PNG\r\n\x1a\n this is not the rest of a PNG", {"Content-Type": "image/png"}
        if route == "noai":
            return 200, png_bytes(), {"X-Robots-Tag": "noai"}
        return 404, b"not found", {}


@contextmanager
def image_server() -> Iterator[ImageServer]:
    state = ImageServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body, headers = state.answer(self.path)
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def write_pairs_tsv(path: Path, rows: list[tuple[str, str]]) -> Path:
    """A mars_vl_pairs.tsv of (key, url) rows with captions derived from the key."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["url", "ori_caption", "refined_caption", "key"])
        for key, url in rows:
            writer.writerow([url, f"original {key}", f"refined caption of {key}", key])
    return path


def fake_hub_repo(
    cache: Path, repo_id: str, files: dict[str, bytes], *, commit: str = COMMIT, ref: bool = True
) -> Path:
    """A dataset repo laid out as the hub cache lays it out (blobs, snapshot links, refs/main)."""
    import hashlib

    repo = cache / ("datasets--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("/".join([".."] * (len(Path(name).parts) + 1))) / "blobs" / blob.name)
    if ref:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
    return snapshot
