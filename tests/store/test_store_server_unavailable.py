"""A Qdrant server that is down or restarting: `ServerStore` says so as `StoreUnavailable`, which
jobs retry (tests/indexer/test_faults.py) and the services answer with 503. Real qdrant-client
over real sockets: nothing listening, and a server answering 503 as a restarting proxy does."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from marsbench.store import Point, StoreError, StoreUnavailable
from marsbench.store.server import ServerStore


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Restarting(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        body = b'{"status": {"error": "service is restarting"}}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = _answer  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def restarting_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Restarting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_nothing_listening_is_unavailable_and_names_the_server() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with ServerStore(url, timeout=2) as store:
        with pytest.raises(StoreUnavailable, match=f"Qdrant at {url}.* did not answer"):
            store.count("tiles")
        with pytest.raises(StoreUnavailable):
            store.upsert("tiles", [Point(id="a", vectors={"image": np.ones(4, np.float32)}, payload={})])


def test_a_503_answer_is_unavailable(restarting_url: str) -> None:
    with ServerStore(restarting_url, timeout=2) as store, pytest.raises(StoreUnavailable, match="503"):
        store.count("tiles")
    assert issubclass(StoreUnavailable, StoreError)  # services map every StoreError to 503
