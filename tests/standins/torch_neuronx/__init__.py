"""A STAND-IN for torch-neuronx, for tests only: the real package needs the Neuron SDK, which cannot
be installed or run here (no Neuron hardware, no Neuron package repository).

It keeps the parts of the real library's contract the project depends on, so that code using it
fails here the way it would on an inf2/trn instance (sources: the torch-neuronx API reference,
frameworks/torch/torch-neuronx/api-reference-guide/inference/ in aws-neuron/aws-neuron-sdk, and the
neuronx-cc CLI reference of Neuron 2.31, compiler/neuronx-cc/api-reference-guide/index.rst):

- `trace` returns a ScriptModule whose graph calls `neuron::forward_v2`, an operator that exists
  only once this package is imported: `torch.jit.load` of a saved artefact fails before
  `import torch_neuronx`, as a real artefact (`torch.classes.neuron.Model`) does.
- `trace` refuses compiler flags neuronx-cc does not document, or values it does not accept;
  `--logical-nc-config` only with `--target trn2`; `cpu_backend=True` only with `--target`; and
  without `cpu_backend` it needs a NeuronCore to trace on.
- A traced model runs only on a NeuronCore of this process: the host's cores
  (NEURON_STANDIN_INSTANCE_TYPE says which instance this pretends to be; unset, there is no Neuron
  device), narrowed by NEURON_RT_VISIBLE_CORES as the device plugin sets it; with the input shapes
  and dtypes it was traced with; compiled for this host's NeuronCore version and, on trn2, the
  runtime's logical NeuronCore config (NEURON_LOGICAL_NC_CONFIG, default 2).
- `DataParallel(model, device_ids, dim, set_dynamic_batching)` takes per-process, zero-based core
  indices (ints or 'nc:N') among the visible cores; without dynamic batching the batch must be the
  compiled batch times the cores.
- `async_load` / `lazy_load` take only a traced model, and are recorded in it (`load_settings`).

What it does not do: compile anything. The computation is a torch.jit trace of the module, run on
CPU in the traced dtypes, so outputs match eager PyTorch, not Neuron's numerics.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__version__ = "2.9.0.2.15.0+standin"
STANDIN = True

# NeuronCores per instance type, as the device plugin advertises them (trn2 at LNC=2; 128 at LNC=1).
INSTANCE_CORES = {
    "inf2.xlarge": 2,
    "inf2.8xlarge": 2,
    "inf2.24xlarge": 12,
    "inf2.48xlarge": 24,
    "trn1.2xlarge": 2,
    "trn1.32xlarge": 32,
    "trn1n.32xlarge": 32,
    "trn2.48xlarge": 64,
}
# neuronx-cc 2.31's documented flags: name -> accepted values (None: takes no value, "": any value).
COMPILER_FLAGS: dict[str, tuple[str, ...] | str | None] = {
    "--target": ("inf2", "trn1", "trn1n", "trn2"),
    "--model-type": ("generic", "transformer", "unet-inference"),
    "--auto-cast": ("none", "matmult", "all"),
    "--auto-cast-type": ("bf16", "fp16", "tf32", "fp8_e4m3"),
    "--distribution-strategy": ("llm-training",),
    "--logical-nc-config": ("1", "2"),
    "--optlevel": ("1", "2", "3"),
    "--enable-mixed-precision-accumulation": None,
    "--enable-saturate-infinity": None,
    "--enable-fast-context-switch": None,
    "--enable-fast-loading-neuron-binaries": None,
    "--logfile": "",
    "--verbose": ("info", "warning", "error", "critical", "debug"),
}
FLAG_ALIASES = {"-lnc": "--logical-nc-config", "-O": "--optlevel"}
NC_V2_TARGETS = ("inf2", "trn1", "trn1n")

# Executions per visible core index, for tests to see where DataParallel ran its chunks.
core_executions: Counter[int] = Counter()
_current_core = threading.local()
# Set while trace() records the graph: compiling runs nothing on a NeuronCore.
_tracing = threading.local()

_library = torch.library.Library("neuron", "DEF")
_library.define("forward_v2(Tensor[] inputs, str model) -> Tensor[]")


class NeuronRuntimeError(RuntimeError):
    """What the Neuron runtime or compiler reports (the real library raises RuntimeError too)."""


# --- the host this stand-in pretends to be -----------------------------------------------------------


def host_instance_type() -> str | None:
    return os.environ.get("NEURON_STANDIN_INSTANCE_TYPE") or None


def _host_cores() -> int:
    instance = host_instance_type()
    if instance is None:
        return 0
    if instance not in INSTANCE_CORES:
        raise NeuronRuntimeError(f"NEURON_STANDIN_INSTANCE_TYPE={instance}: not a Neuron instance type")
    cores = INSTANCE_CORES[instance]
    return cores * 2 if instance.startswith("trn2") and runtime_logical_nc_config() == 1 else cores


def runtime_logical_nc_config() -> int:
    return int(os.environ.get("NEURON_LOGICAL_NC_CONFIG", "2"))


def visible_cores() -> list[int]:
    """The host's NeuronCores this process may use: NEURON_RT_VISIBLE_CORES ("3", "0-1", "4,5")."""
    total = _host_cores()
    if total == 0:
        raise NeuronRuntimeError("nrt_init: no Neuron device found on this host (no /dev/neuron*)")
    spec = os.environ.get("NEURON_RT_VISIBLE_CORES", "").strip()
    if not spec:
        return list(range(total))
    cores: list[int] = []
    for part in spec.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if match is None:
            raise NeuronRuntimeError(f"NEURON_RT_VISIBLE_CORES={spec!r}: expected an index or an inclusive range")
        first, last = int(match[1]), int(match[2] or match[1])
        cores.extend(range(first, last + 1))
    outside = [core for core in cores if core >= total]
    if outside:
        raise NeuronRuntimeError(
            f"NEURON_RT_VISIBLE_CORES={spec}: NeuronCore(s) {outside} do not exist on {host_instance_type()} "
            f"({total} cores)"
        )
    return cores


# --- the operator a traced model runs --------------------------------------------------------------


def _forward_v2(inputs: list[torch.Tensor], model: str) -> list[torch.Tensor]:
    if getattr(_tracing, "active", False):
        return [t.clone() for t in inputs]
    spec = json.loads(model)
    cores = visible_cores()
    core = getattr(_current_core, "index", 0)
    if core >= len(cores):
        raise NeuronRuntimeError(f"{spec['name']}: NeuronCore {core} is not visible to this process")
    host_family = (host_instance_type() or "").split(".")[0]
    target = spec["target"]
    if (target == "trn2") != (host_family == "trn2") or (target in NC_V2_TARGETS) != (host_family in NC_V2_TARGETS):
        raise NeuronRuntimeError(f"{spec['name']}: compiled for {target}, cannot load on {host_instance_type()}")
    if target == "trn2" and spec["logical_nc_config"] != runtime_logical_nc_config():
        raise NeuronRuntimeError(
            f"{spec['name']}: compiled with --logical-nc-config={spec['logical_nc_config']}, but the runtime's "
            f"NEURON_LOGICAL_NC_CONFIG is {runtime_logical_nc_config()}"
        )
    expected = [(tuple(shape), dtype) for shape, dtype in spec["inputs"]]
    given = [(tuple(t.shape), str(t.dtype).removeprefix("torch.")) for t in inputs]
    if given != expected:
        raise NeuronRuntimeError(f"{spec['name']}: inputs {given} differ from the traced {expected}")
    core_executions[cores[core]] += 1
    return [t.clone() for t in inputs]


_library.impl("forward_v2", _forward_v2, "CPU")


class _Compiled(nn.Module):
    """What the traced graph runs: the operator (the runtime's checks), then the module traced by torch.jit."""

    def __init__(self, inner: torch.jit.ScriptModule, spec: dict[str, Any]) -> None:
        super().__init__()
        self.inner = inner
        self.spec = json.dumps(spec, sort_keys=True)
        self.register_buffer("neuron_spec", torch.tensor(list(self.spec.encode()), dtype=torch.uint8))
        self.register_buffer("neuron_load_flags", torch.zeros(2, dtype=torch.uint8))  # async, lazy

    def forward(self, *inputs: torch.Tensor) -> Any:
        checked = torch.ops.neuron.forward_v2(list(inputs), self.spec)
        return self.inner(*checked)


# --- compile -----------------------------------------------------------------------------------------


def _parse_compiler_args(compiler_args: str | Sequence[str] | None) -> dict[str, str | None]:
    tokens = compiler_args.split() if isinstance(compiler_args, str) else list(compiler_args or [])
    flags: dict[str, str | None] = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        name, equals, value = token.partition("=")
        name = FLAG_ALIASES.get(name, name)
        if name not in COMPILER_FLAGS:
            raise NeuronRuntimeError(f"neuronx-cc compile: error: unrecognized arguments: {token}")
        accepted = COMPILER_FLAGS[name]
        if accepted is None:
            if equals:
                raise NeuronRuntimeError(f"neuronx-cc compile: error: {name} takes no value")
            flags[name] = None
        else:
            if not equals:
                index += 1
                if index == len(tokens):
                    raise NeuronRuntimeError(f"neuronx-cc compile: error: {name} expects a value")
                value = tokens[index]
            if accepted and value not in accepted:
                raise NeuronRuntimeError(
                    f"neuronx-cc compile: error: {name}: invalid choice {value!r} (choose from {', '.join(accepted)})"
                )
            flags[name] = value
        index += 1
    return flags


def trace(
    func: Any,
    example_inputs: torch.Tensor | tuple[torch.Tensor, ...],
    *_: Any,
    input_output_aliases: dict[Any, Any] | None = None,
    compiler_workdir: str | os.PathLike[str] | None = None,
    compiler_args: str | Sequence[str] | None = None,
    partitioner_config: Any = None,
    inline_weights_to_neff: bool = True,
    cpu_backend: bool = False,
) -> torch.jit.ScriptModule:
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    flags = _parse_compiler_args(compiler_args)
    host_family = (host_instance_type() or "").split(".")[0] or None
    if cpu_backend and "--target" not in flags:
        raise NeuronRuntimeError("torch_neuronx.trace: cpu_backend=True needs --target in compiler_args")
    if not cpu_backend and _host_cores() == 0:
        raise NeuronRuntimeError(
            "torch_neuronx.trace: tracing runs the model on a NeuronCore, and this host has none; "
            "trace with cpu_backend=True and --target to compile on CPU"
        )
    target = flags.get("--target") or host_family
    lnc = flags.get("--logical-nc-config")
    if lnc is not None and target != "trn2":
        raise NeuronRuntimeError(
            f"neuronx-cc compile: error: --logical-nc-config is only available on trn2, not {target}"
        )
    with torch.no_grad():
        inner = torch.jit.trace(func, inputs, check_trace=False)
        spec = {
            "name": type(func).__name__,
            "target": target,
            "logical_nc_config": int(lnc or 2) if target == "trn2" else None,
            "inputs": [[list(t.shape), str(t.dtype).removeprefix("torch.")] for t in inputs],
            "compiler_args": sorted(k if v is None else f"{k}={v}" for k, v in flags.items()),
        }
        _tracing.active = True
        try:
            return torch.jit.trace(_Compiled(inner, spec), inputs, check_trace=False)
        finally:
            _tracing.active = False


def _require_traced(model: Any, api: str) -> None:
    if not isinstance(model, torch.jit.ScriptModule) or not hasattr(model, "neuron_load_flags"):
        raise TypeError(
            f"torch_neuronx.{api}: expected a model created by torch_neuronx.trace, got {type(model).__name__}"
        )


def async_load(trace: Any, enable_async_load: bool = True) -> None:
    _require_traced(trace, "async_load")
    trace.neuron_load_flags[0] = int(enable_async_load)


def lazy_load(trace: Any, enable_lazy_load: bool = True) -> None:
    _require_traced(trace, "lazy_load")
    trace.neuron_load_flags[1] = int(enable_lazy_load)


def load_settings(model: Any) -> dict[str, Any]:
    """Stand-in only: what trace recorded (target, inputs, flags) and the load settings set on it."""
    _require_traced(model, "load_settings")
    spec: dict[str, Any] = json.loads(bytes(model.neuron_spec.tolist()).decode())
    flags = model.neuron_load_flags.tolist()
    return {**spec, "async_load": bool(flags[0]), "lazy_load": bool(flags[1])}


# --- data parallel -------------------------------------------------------------------------------


class DataParallel(nn.Module):
    def __init__(
        self, model: Any, device_ids: Sequence[int | str] | None = None, dim: int = 0, set_dynamic_batching: bool = True
    ) -> None:
        super().__init__()
        _require_traced(model, "DataParallel")
        visible = visible_cores()
        ids = list(range(len(visible))) if device_ids is None else [_core_index(d) for d in device_ids]
        outside = [i for i in ids if i >= len(visible)]
        if not ids or outside:
            raise NeuronRuntimeError(
                f"torch_neuronx.DataParallel: device_ids {list(device_ids or [])} are not among the "
                f"{len(visible)} NeuronCore(s) visible to this process (zero-based, per process)"
            )
        self.module = model
        self.device_ids = ids
        self.dim = dim
        self.dynamic_batching = set_dynamic_batching
        self.compiled_batch = int(load_settings(model)["inputs"][0][0][dim])

    def disable_dynamic_batching(self) -> None:
        self.dynamic_batching = False

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        batch = inputs[0].shape[self.dim]
        if not self.dynamic_batching and batch != self.compiled_batch * len(self.device_ids):
            raise NeuronRuntimeError(
                f"torch_neuronx.DataParallel: without dynamic batching the batch ({batch}) must be the compiled "
                f"batch ({self.compiled_batch}) times the NeuronCores ({len(self.device_ids)})"
            )
        outputs = []
        for number, start in enumerate(range(0, batch, self.compiled_batch)):
            _current_core.index = self.device_ids[number % len(self.device_ids)]
            try:
                chunk = [t.narrow(self.dim, start, self.compiled_batch) for t in inputs]
                outputs.append(self.module(*chunk))
            finally:
                _current_core.index = 0
        return torch.cat(outputs, dim=self.dim)


def _core_index(device_id: int | str) -> int:
    if isinstance(device_id, int):
        return device_id
    match = re.fullmatch(r"nc:(\d+)", device_id)
    if match is None:
        raise NeuronRuntimeError(f"torch_neuronx.DataParallel: device id {device_id!r} is neither an int nor 'nc:N'")
    return int(match[1])
