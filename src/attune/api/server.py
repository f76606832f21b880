"""Serve the API with uvicorn: blocking for ``attune serve``, or in a thread for tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from sqlalchemy import Engine

from attune.api.app import create_app

STARTUP_TIMEOUT_S = 10.0


def run_server(engine: Engine, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the API on ``host:port`` until interrupted."""
    uvicorn.run(create_app(engine), host=host, port=port)


@contextmanager
def serve(engine: Engine, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve the API in a background thread on a free port; yield its base URL, then stop it."""
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that name it, and without
    # it every keep-alive response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(engine), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API server did not start on {host}:{port}")
            time.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT_S)
        sock.close()
