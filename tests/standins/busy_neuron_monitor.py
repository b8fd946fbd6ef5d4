"""Stand-in for neuron-monitor's Prometheus exporter on a busy node, for the dashboard tests.

The real scrape we hold (tests/fixtures/neuron-monitor-inf1.6xlarge.prom) is of an idle inf1.6xlarge:
16 cores, all at 0 %, no errors, so a panel that hides zeros, sorts cores as text or cannot hold 128
rows looks fine against it. This stand-in serves a trn2.48xlarge-sized node (16 devices x 8 cores = 128
NeuronCores, LNC=1) from that same scrape: every metric name, HELP and TYPE line and label set is the
real one's, only the node's identity and the numbers change. Cores are unevenly busy (two of every
eight idle, as cores no pod holds), device memory is held by every kind, and execution counters grow
with time: completed executions, and errors below the NeuronExecutionErrorsRising limit, so that rate
panels have something other than zero to draw without an alert firing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures/neuron-monitor-inf1.6xlarge.prom"

INSTANCE_ID = "i-0b5e5b5e5b5e5b5e5"
INSTANCE_TYPE = "trn2.48xlarge"
DEVICES, CORES_PER_DEVICE = 16, 8
CORES = DEVICES * CORES_PER_DEVICE
# Per second, below the 0.05/s NeuronExecutionErrorsRising fires at.
ERRORS_PER_SECOND = {"generic": 0.01, "numerical": 0.005}
EXECUTIONS_PER_SECOND = 40.0

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>.*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def core_is_idle(core: int) -> bool:
    return core % 8 in (6, 7)


def utilisation(core: int) -> float:
    """Uneven: 0.2 to 0.95 on held cores, ties between some of them, 0 on the idle ones."""
    return 0.0 if core_is_idle(core) else round(0.2 + 0.75 * ((core * 37) % 17) / 16, 4)


MEMORY_BYTES: dict[str, Callable[[int], float]] = {
    "constants": lambda core: 0.0 if core_is_idle(core) else 117.8 * 2**20,
    "model_code": lambda core: 0.0 if core_is_idle(core) else 31.5 * 2**20 + core * 4096,
    "model_shared_scratchpad": lambda core: 0.0 if core_is_idle(core) else 64 * 2**20,
    "runtime_memory": lambda core: 8 * 2**20,
    "tensors": lambda core: 0.0 if core_is_idle(core) else 212 * 2**20,
}


def _labels_text(labels: list[tuple[str, str]]) -> str:
    return ",".join(f'{key}="{value}"' for key, value in labels)


def _node_labels(labels: list[tuple[str, str]]) -> list[tuple[str, str]]:
    replaced = {"instance_id": INSTANCE_ID, "instance_type": INSTANCE_TYPE}
    changed = [(key, replaced.get(key, value)) for key, value in labels]
    if any(key == "neuron_device_count" for key, _ in labels):  # neuron_hardware_info
        hardware = {"neuron_device_count": str(DEVICES), "neuroncore_per_device_count": str(CORES_PER_DEVICE)}
        changed = [(key, hardware.get(key, value)) for key, value in changed]
    return changed


def _value(name: str, labels: dict[str, str], original: str, seconds: float) -> str:
    if name == "execution_errors_total":
        return repr(round(ERRORS_PER_SECOND.get(labels["error_type"], 0.0) * seconds, 3))
    if name == "execution_status_total":
        rate = {"completed": EXECUTIONS_PER_SECOND, "completed_with_err": sum(ERRORS_PER_SECOND.values())}
        return repr(round(rate.get(labels["status_type"], 0.0) * seconds, 3))
    if name == "execution_latency_seconds":  # an SD UNet step on a NeuronCore-v3, about 35 ms at p50
        return repr(0.035 if labels["percentile"] in ("p0", "p1", "p25", "p50") else 0.048)
    return original


def busy_scrape(seconds: float) -> bytes:
    """The exposition `seconds` after the exporter started."""
    lines: list[str] = []
    for line in FIXTURE.read_text(encoding="utf-8").splitlines():
        match = _SAMPLE.match(line)
        if match is None:  # HELP, TYPE and blank lines as the real exporter writes them
            lines.append(line)
            continue
        name, value = match["name"], match["value"]
        labels = _node_labels(_LABEL.findall(match["labels"]))
        label_map = dict(labels)
        if "neuroncore" not in label_map:
            lines.append(f"{name}{{{_labels_text(labels)}}} {_value(name, label_map, value, seconds)}")
            continue
        if label_map["neuroncore"] != "0":  # one template per family, repeated for every core below
            continue
        for core in range(CORES):
            per_core = [(key, str(core) if key == "neuroncore" else value) for key, value in labels]
            if name == "neuroncore_utilization_ratio":
                value = repr(utilisation(core))
            elif name.startswith("neuroncore_memory_usage_"):
                value = repr(MEMORY_BYTES[name.removeprefix("neuroncore_memory_usage_")](core))
            lines.append(f"{name}{{{_labels_text(per_core)}}} {value}")
    return ("\n".join(lines) + "\n").encode()


def busy_exporter_body(clock: Callable[[], float] = time.monotonic) -> Callable[[], bytes]:
    """A scrape body producer whose counters grow from the moment it is made."""
    started = clock()
    # Counters start above zero, as on a node that has run for a while.
    return lambda: busy_scrape(600.0 + clock() - started)
