"""A small HTTP server on 127.0.0.1 for the tests' stand-ins (a static scrape, an instance metadata
service), served from a thread until the block ends."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def serving_on_loopback(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    """`handler` on 127.0.0.1 at a free port, which it yields."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
