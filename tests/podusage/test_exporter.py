"""The per-pod Neuron usage exporter as a process, against the stand-in kubelet PodResources server on a
unix socket: what it exports for allocations shaped like the Neuron device plugin's, allocations that
change between scrapes, IDs it cannot map, a socket that is missing, refuses or rate-limits, the
instance id from a metadata service, and bad arguments."""

from __future__ import annotations

import contextlib
import http.server
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nchart.localcluster.processes import free_port, running
from tests.standins.kubelet_podresources import Container, Device, Pod, StandInKubelet, neuron_node_devices
from tests.support.httpserver import serving_on_loopback
from tests.support.podusage import EXPORTER, pod_usage_exporter, socket_dir
from tests.support.readiness import wait_until_answers

INSTANCE_ID = "i-09455676d166b28aa"
# An inf1.6xlarge as the device plugin advertises it: 4 devices of 4 cores.
INF1_6XLARGE = neuron_node_devices(devices=4, cores_per_device=4)
SERVING = Pod("sd-serving", "sd21-0", (Container("server", {"aws.amazon.com/neuroncore": ("0", "1")}),))
TRAINING = Pod(
    "ml-team",
    "trainer-0",
    (
        Container("trainer", {"aws.amazon.com/neuron": ("2",)}),
        Container("log-shipper"),  # no devices: listed by the kubelet, exported as nothing
    ),
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (found, labels), _ in samples.items() if found == name]


def value(samples: Samples, name: str, **labels: str) -> float:
    matches = [
        v
        for (found, found_labels), v in samples.items()
        if found == name and labels.items() <= dict(found_labels).items()
    ]
    assert len(matches) == 1, f"{name}{labels}: {len(matches)} series"
    return matches[0]


def core_holders(samples: Samples) -> dict[int, tuple[str, str, str]]:
    return {
        int(s["neuroncore"]): (s["namespace"], s["pod"], s["container"])
        for s in series(samples, "neuron_pod_neuroncore_info")
    }


@contextlib.contextmanager
def exporter(socket_path: Path, *extra: str) -> Iterator[int]:
    instance_id = None if any(arg.startswith("--imds") for arg in extra) else INSTANCE_ID
    with pod_usage_exporter(socket_path, *extra, instance_id=instance_id) as port:
        yield port


@pytest.fixture
def socket_path() -> Iterator[Path]:
    with socket_dir() as directory:
        yield directory / "kubelet.sock"


def test_each_held_core_is_named_with_its_pod_and_device(socket_path: Path) -> None:
    with StandInKubelet(socket_path, INF1_6XLARGE, [SERVING, TRAINING]), exporter(socket_path) as port:
        samples = scrape(port)
    assert value(samples, "neuron_pod_resources_up") == 1
    assert core_holders(samples) == {
        0: ("sd-serving", "sd21-0", "server"),
        1: ("sd-serving", "sd21-0", "server"),
        # device 2 of an inf1.6xlarge: cores 8-11
        **{core: ("ml-team", "trainer-0", "trainer") for core in range(8, 12)},
    }
    by_core = {int(s["neuroncore"]): s for s in series(samples, "neuron_pod_neuroncore_info")}
    assert by_core[1]["neuron_device_index"] == "0" and by_core[1]["resource"] == "aws.amazon.com/neuroncore"
    assert by_core[9]["neuron_device_index"] == "2" and by_core[9]["resource"] == "aws.amazon.com/neuron"
    assert {s["instance_id"] for s in series(samples, "neuron_pod_neuroncore_info")} == {INSTANCE_ID}
    assert series(samples, "neuron_pod_device_info") == [
        {
            "instance_id": INSTANCE_ID,
            "neuron_device_index": "2",
            "namespace": "ml-team",
            "pod": "trainer-0",
            "container": "trainer",
        }
    ]
    assert value(samples, "neuron_pod_allocatable", resource="aws.amazon.com/neuroncore") == 16
    assert value(samples, "neuron_pod_allocatable", resource="aws.amazon.com/neuron") == 4
    assert value(samples, "neuron_pod_unresolved_devices", resource="aws.amazon.com/neuron") == 0


def test_allocations_that_change_between_scrapes_are_seen_on_the_next(socket_path: Path) -> None:
    with StandInKubelet(socket_path, INF1_6XLARGE, [SERVING]) as kubelet, exporter(socket_path) as port:
        assert set(core_holders(scrape(port))) == {0, 1}
        moved = Pod("sd-serving", "sd21-1", (Container("server", {"aws.amazon.com/neuroncore": ("4", "5")}),))
        kubelet.set_pods([moved])
        assert core_holders(scrape(port)) == {
            4: ("sd-serving", "sd21-1", "server"),
            5: ("sd-serving", "sd21-1", "server"),
        }
        kubelet.set_pods([])
        after = scrape(port)
    assert core_holders(after) == {}
    assert value(after, "neuron_pod_resources_up") == 1


def test_a_device_on_two_numa_nodes_is_one_device(socket_path: Path) -> None:
    # The kubelet lists a device once per NUMA node of its topology.
    two_nodes = [Device(d.resource, d.device_id, (0, 1)) for d in INF1_6XLARGE]
    with StandInKubelet(socket_path, two_nodes, [TRAINING]), exporter(socket_path) as port:
        samples = scrape(port)
    assert value(samples, "neuron_pod_allocatable", resource="aws.amazon.com/neuroncore") == 16
    assert sorted(core_holders(samples)) == [8, 9, 10, 11]


def test_ids_it_cannot_map_are_counted_and_named_not_guessed(socket_path: Path) -> None:
    odd = Pod("odd", "odd-0", (Container("main", {"aws.amazon.com/neuroncore": ("nc-7",)}),))
    # Core 9 is in device 2, which TRAINING holds whole: two containers on one core.
    clash = Pod("clash", "clash-0", (Container("main", {"aws.amazon.com/neuroncore": ("9",)}),))
    with StandInKubelet(socket_path, INF1_6XLARGE, [TRAINING, odd, clash]), exporter(socket_path) as port:
        samples = scrape(port)
    assert sorted(core_holders(samples)) == [8, 10, 11]
    unresolved = {(s["pod"], s["device_id"], s["reason"]) for s in series(samples, "neuron_pod_unresolved_device_info")}
    assert unresolved == {
        ("odd-0", "nc-7", "not a decimal index"),
        ("clash-0", "9", "core 9 claimed by more than one container"),
        ("trainer-0", "2", "core 9 claimed by more than one container"),
    }
    assert value(samples, "neuron_pod_unresolved_devices", resource="aws.amazon.com/neuroncore") == 2
    assert value(samples, "neuron_pod_unresolved_devices", resource="aws.amazon.com/neuron") == 1


def test_whole_devices_without_a_core_count_are_unresolved_unless_given_one(socket_path: Path) -> None:
    devices_only = [d for d in INF1_6XLARGE if d.resource == "aws.amazon.com/neuron"]
    with StandInKubelet(socket_path, devices_only, [TRAINING]):
        with exporter(socket_path) as port:
            samples = scrape(port)
        assert core_holders(samples) == {}
        assert value(samples, "neuron_pod_unresolved_devices", resource="aws.amazon.com/neuron") == 1
        with exporter(socket_path, "--cores-per-device", "4") as port:
            assert sorted(core_holders(scrape(port))) == [8, 9, 10, 11]


def test_a_missing_socket_reads_as_down_until_the_kubelet_serves(socket_path: Path) -> None:
    with exporter(socket_path) as port:
        samples = scrape(port)
        assert value(samples, "neuron_pod_resources_up") == 0
        assert value(samples, "neuron_pod_resources_errors_total", code="unavailable") >= 1
        assert series(samples, "neuron_pod_neuroncore_info") == []
        with StandInKubelet(socket_path, INF1_6XLARGE, [SERVING]):
            # gRPC retries the connection with a backoff: the first scrapes may still fail.
            for _ in range(120):
                samples = scrape(port)
                if value(samples, "neuron_pod_resources_up") == 1:
                    break
                threading.Event().wait(1)
    assert set(core_holders(samples)) == {0, 1}


def test_a_socket_that_refuses_reads_as_down(socket_path: Path) -> None:
    # A socket file nobody listens on, as a stopped kubelet leaves it: connections are refused.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(socket_path))
    stale.close()
    with exporter(socket_path) as port:
        samples = scrape(port)
    assert value(samples, "neuron_pod_resources_up") == 0
    assert value(samples, "neuron_pod_resources_errors_total", code="unavailable") >= 1


def test_the_kubelets_rate_limit_reads_as_down_and_passes(socket_path: Path) -> None:
    now = [0.0]
    with (
        StandInKubelet(socket_path, INF1_6XLARGE, [SERVING], clock=lambda: now[0]) as kubelet,
        exporter(socket_path) as port,
    ):
        # The clock stands still: the burst of 10 calls is all there is (2 calls a scrape).
        scrapes = [scrape(port) for _ in range(6)]
        ups = [value(s, "neuron_pod_resources_up") for s in scrapes]
        assert 0 in ups, f"never refused: {ups} after {kubelet.servicer.calls} calls"
        refused = scrapes[ups.index(0)]
        assert value(refused, "neuron_pod_resources_errors_total", code="resource_exhausted") == 1
        now[0] += 1.0  # a second refills the bucket
        assert value(scrape(port), "neuron_pod_resources_up") == 1


@contextlib.contextmanager
def metadata_service(instance_id: str) -> Iterator[str]:
    """A stand-in EC2 instance metadata service (IMDSv2): a token from PUT /latest/api/token, required
    on every read, as IMDSv2-only instances enforce."""
    token = "stand-in-token"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                self.send_error(400)
                return
            self._answer(token)

        def do_GET(self) -> None:
            if self.headers.get("X-aws-ec2-metadata-token") != token:
                self.send_error(401)
                return
            if self.path != "/latest/meta-data/instance-id":
                self.send_error(404)
                return
            self._answer(instance_id)

        def _answer(self, body: str) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: Any) -> None:
            pass

    with serving_on_loopback(Handler) as port:
        yield f"http://127.0.0.1:{port}"


def test_the_instance_id_comes_from_the_metadata_service(socket_path: Path) -> None:
    with (
        metadata_service("i-0123456789abcdef0") as imds,
        StandInKubelet(socket_path, INF1_6XLARGE, [SERVING]),
        exporter(socket_path, "--imds-endpoint", imds) as port,
    ):
        samples = scrape(port)
    assert {s["instance_id"] for s in series(samples, "neuron_pod_neuroncore_info")} == {"i-0123456789abcdef0"}


def test_an_unreachable_metadata_service_is_a_clear_error(socket_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    argv = [
        *EXPORTER,
        "--socket",
        str(socket_path),
        "--port",
        str(free_port()),
        "--imds-endpoint",
        closed,
        "--timeout",
        "2",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "cannot read the instance id from the instance metadata service" in result.stderr
    assert "--instance-id" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--port", "0"], "expected a whole number of at least 1, got '0'"),
        (["--cores-per-device", "two"], "expected a whole number of at least 1, got 'two'"),
        (["--timeout", "-1"], "expected seconds above 0, got '-1'"),
    ],
)
def test_bad_arguments_say_which_and_exit_2(arguments: list[str], message: str) -> None:
    result = subprocess.run([*EXPORTER, *arguments], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_stops_it(socket_path: Path) -> None:
    port = free_port()
    argv = [
        *EXPORTER,
        "--socket",
        str(socket_path),
        "--listen-address",
        "127.0.0.1",
        "--port",
        str(port),
        "--instance-id",
        INSTANCE_ID,
    ]
    with running("neuron-pod-usage-exporter", argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as (process, _):
        wait_until_answers(f"http://127.0.0.1:{port}/metrics", "the exporter", timeout_s=120)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
