"""The local control plane's pod network: an HTTP proxy that carries a request for a pod's address to the
process on 127.0.0.1 that plays that pod.

kwok gives fake pods IPs (from its --cidr) but nothing listens there, and an EndpointSlice may not hold a
loopback address, so Services and Prometheus' discovery see the pod IPs. Prometheus scrapes through this
proxy (`proxy_url` on each job): `GET http://POD_IP:PORT/metrics` goes to the address the routes file
maps `POD_IP:PORT` to ({"10.0.0.7:8080": "127.0.0.1:41234"}, re-read on change); an https target
(`CONNECT POD_IP:PORT`) gets a TCP tunnel to that address, TLS end to end. A pod no process plays answers
502, so its target is down, as an unreachable pod's would be.

    python -m nchart.localcluster.podnetwork --port PORT --routes FILE
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import http.server
import json
import select
import socket
import sys
import urllib.parse
from pathlib import Path
from typing import Any

# Hop-by-hop headers a proxy does not forward (RFC 9110 7.6.1).
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade"}  # fmt: skip


class Routes:
    """The routes file, read again whenever it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: float | None = None
        self._routes: dict[str, str] = {}

    def lookup(self, address: str) -> str | None:
        try:
            stamp = self.path.stat().st_mtime
        except OSError:
            return None
        if stamp != self._stamp:
            try:
                self._routes = dict(json.loads(self.path.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError):
                return None
            self._stamp = stamp
        return self._routes.get(address)


def write_route(path: Path, pod_address: str, local_address: str | None) -> None:
    """Adds (or, with None, removes) a route; written whole and renamed, so a reader never sees half."""
    routes: dict[str, str] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if local_address is None:
        routes.pop(pod_address, None)
    else:
        routes[pod_address] = local_address
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(routes, indent=1, sort_keys=True), encoding="utf-8")
    temporary.replace(path)


def handler(routes: Routes) -> type[http.server.BaseHTTPRequestHandler]:
    class Proxy(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.scheme != "http" or not url.netloc:
                self._answer(400, f"not a proxy request: {self.path}")
                return
            target = routes.lookup(url.netloc)
            if target is None:
                self._answer(502, f"no process plays {url.netloc} on this machine")
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            path = urllib.parse.urlunsplit(("", "", url.path or "/", url.query, ""))
            host, _, port = target.rpartition(":")
            connection = http.client.HTTPConnection(host, int(port), timeout=30)
            try:
                connection.request(self.command, path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
            except OSError as error:
                self._answer(502, f"{url.netloc} -> {target}: {error}")
                return
            finally:
                connection.close()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _answer(self, status: int, message: str) -> None:
            body = (message + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_HEAD = _forward

        def do_CONNECT(self) -> None:
            target = routes.lookup(self.path)
            if target is None:
                self._answer(502, f"no process plays {self.path} on this machine")
                return
            host, _, port = target.rpartition(":")
            try:
                upstream = socket.create_connection((host, int(port)), timeout=30)
            except OSError as error:
                self._answer(502, f"{self.path} -> {target}: {error}")
                return
            self.send_response(200, "Connection established")
            self.end_headers()
            self.close_connection = True
            _relay(self.connection, upstream)

        def log_message(self, *args: Any) -> None:
            pass

    return Proxy


def _relay(client: socket.socket, upstream: socket.socket) -> None:
    """Copies bytes both ways until either side closes."""
    with upstream:
        sockets = [client, upstream]
        while True:
            readable, _, failed = select.select(sockets, [], sockets, 60)
            if failed or not readable:
                return
            for source in readable:
                data = source.recv(65536)
                if not data:
                    return
                (upstream if source is client else client).sendall(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nchart.localcluster.podnetwork")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--routes", type=Path, required=True)
    args = parser.parse_args(argv)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler(Routes(args.routes)))
    print(f"pod network proxy on 127.0.0.1:{args.port}, routes from {args.routes}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
