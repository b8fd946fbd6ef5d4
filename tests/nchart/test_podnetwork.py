"""The local control plane's pod network stand-in (nchart.localcluster.podnetwork), as its own process:
a scrape of a routed pod address reaches the process that plays it, a CONNECT gets a tunnel to it, an
address no process plays answers 502, and a route written later is picked up."""

from __future__ import annotations

import http.server
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nchart.localcluster.podnetwork import write_route
from nchart.localcluster.processes import free_port, running, wait_until


class Played(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"played {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def pod_process() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Played)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    routes = tmp_path / "routes.json"
    port = free_port()
    argv = [sys.executable, "-m", "nchart.localcluster.podnetwork", "--port", str(port), "--routes", str(routes)]
    with running("pod-network", argv):
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{url}/", timeout=2).status_code == 400, 30, "the pod network proxy answering")
        yield url, routes


def test_a_routed_pod_address_reaches_its_process_and_others_are_unreachable(
    proxy: tuple[str, Path], pod_process: str
) -> None:
    url, routes = proxy
    with httpx.Client(proxy=url, timeout=10) as client:
        assert client.get("http://10.0.0.7:8080/metrics").status_code == 502
        write_route(routes, "10.0.0.7:8080", pod_process)
        response = client.get("http://10.0.0.7:8080/metrics?x=1")
        assert response.status_code == 200 and response.text == "played /metrics?x=1\n"
        unplayed = client.get("http://10.0.0.8:8080/metrics")
        assert unplayed.status_code == 502 and "no process plays 10.0.0.8:8080" in unplayed.text
        write_route(routes, "10.0.0.7:8080", None)
        assert client.get("http://10.0.0.7:8080/metrics").status_code == 502


def test_connect_tunnels_to_the_process_that_plays_the_pod(proxy: tuple[str, Path], pod_process: str) -> None:
    url, routes = proxy
    write_route(routes, "10.0.0.9:10259", pod_process)
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as tunnel:
        tunnel.sendall(b"CONNECT 10.0.0.9:10259 HTTP/1.1\r\nHost: 10.0.0.9:10259\r\n\r\n")
        assert tunnel.recv(1024).startswith(b"HTTP/1.1 200")
        # Bytes through the tunnel reach the pod's process unchanged (TLS would, end to end).
        tunnel.sendall(b"GET /metrics HTTP/1.1\r\nHost: 10.0.0.9\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := tunnel.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"played /metrics\n")
