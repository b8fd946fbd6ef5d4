"""eks-neuron-serve: run the server, compile for Neuron, pack, upload and fetch the model, build
random test models."""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Any

import click


class ExitCode(enum.IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    NEURON_UNAVAILABLE = 3


class ServeGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        from .artefacts import FetchError
        from .neuron import NeuronUnavailable
        from .pipeline import ModelLoadError

        try:
            return super().invoke(ctx)
        except NeuronUnavailable as error:
            click.echo(f"eks-neuron-serve: error: {error}", err=True)
            ctx.exit(int(ExitCode.NEURON_UNAVAILABLE))
        except FetchError as error:
            click.echo(f"eks-neuron-serve: error: {error}", err=True)
            ctx.exit(int(ExitCode.FAILURE))
        except (ModelLoadError, FileNotFoundError, ValueError) as error:
            click.echo(f"eks-neuron-serve: error: {error}", err=True)
            ctx.exit(int(ExitCode.USAGE))


@click.group(cls=ServeGroup, context_settings={"auto_envvar_prefix": "SERVING", "help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Stable Diffusion 2.1 server for eks-neuron."""


@cli.command()
@click.option("--host", help="Listen address (default: SD_HOST or 0.0.0.0).")
@click.option("--port", type=int, help="Listen port (default: SD_PORT or 8080).")
def serve(host: str | None, port: int | None) -> None:
    """Run the HTTP server (settings from SD_* environment variables)."""
    import uvicorn

    from .app import create_app
    from .connections import uvicorn_config

    settings = _settings()
    app = create_app(settings)
    log_level = os.environ.get("SD_LOG_LEVEL", "info")
    uvicorn.Server(uvicorn_config(app, settings, host or settings.host, port or settings.port, log_level)).run()


def _settings() -> Any:
    """The SD_* settings, or a usage error naming each bad variable."""
    from pydantic import ValidationError

    from .settings import Settings

    try:
        return Settings()
    except ValidationError as error:
        details = "; ".join(f"SD_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors())
        raise click.UsageError(f"bad settings: {details}") from None


@cli.command()
def worker() -> None:
    """Take generation jobs from SQS (SD_QUEUE_URL), write the images to S3 (SD_QUEUE_OUTPUT_URI); metrics on
    SD_HOST:SD_PORT. SIGTERM finishes the batch in hand and returns the other jobs to the queue."""
    import logging
    import signal

    from prometheus_client import start_http_server

    from .metrics import WorkerMetrics
    from .pipeline import load_configured
    from .sqs import aws_clients
    from .worker import Worker

    settings = _settings()
    logging.basicConfig(level=os.environ.get("SD_LOG_LEVEL", "info").upper(), format="%(levelname)s %(message)s")
    metrics = WorkerMetrics()
    sqs, s3 = aws_clients()
    try:
        queue = Worker(settings, load_configured, sqs, s3, metrics)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    signal.signal(signal.SIGTERM, queue.stop)
    signal.signal(signal.SIGINT, queue.stop)
    start_http_server(settings.port, settings.host, registry=metrics.registry)
    queue.run()
    click.echo("worker: stopped")


@cli.command()
@click.option("--url", required=True, help="The server's base URL (in the cluster: its Service).")
@click.option(
    "--concurrency",
    default="1,2,4",
    show_default=True,
    help="Concurrencies to measure in turn, comma-separated.",
)
@click.option(
    "--requests", "requests_per_level", type=click.IntRange(min=1), default=16, show_default=True,
    help="Timed requests per concurrency (after an untimed wave of as many as the concurrency).",
)  # fmt: skip
@click.option("--steps", type=click.IntRange(1, 150), help="Denoising steps per image (default: the server's).")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A bearer token for a server that asks for one.",
)
@click.option(
    "--result-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the result document here (in the chart's Job: /dev/termination-log).",
)
def loadtest(
    url: str, concurrency: str, requests_per_level: int, steps: int | None, token_file: Path | None,
    result_file: Path | None,
) -> None:  # fmt: skip
    """Measure a server at each concurrency: p50/p99 latency, images/s, its batch sizes. Prints the table,
    then the result document (JSON) that `nchart loadtest` combines across load pods."""
    import json
    import socket

    from .loadclient import aggregate, concurrencies, measure, result_document, table

    try:
        levels_asked = concurrencies(concurrency)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="'--concurrency'") from None
    headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"} if token_file else None
    levels = measure(url.rstrip("/"), levels_asked, requests_per_level, steps, headers, say=click.echo)
    document = result_document(levels, os.environ.get("POD_NAME") or socket.gethostname())
    click.echo(table(aggregate([document])))
    text = json.dumps(document, separators=(",", ":"))
    click.echo(text)
    if result_file is not None:
        result_file.write_text(text)
    if not any(level.succeeded for level in levels):
        raise SystemExit(int(ExitCode.FAILURE))


@cli.command("compile")
@click.option(
    "--model-dir",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Diffusers pipeline to compile.",
)
@click.option(
    "--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Artefact directory to write."
)
@click.option(
    "--tracer",
    type=click.Choice(["auto", "neuron", "jit"]),
    default="auto",
    show_default=True,
    help="neuron: torch_neuronx.trace; jit: torch.jit.trace (same layout, runs anywhere; for development).",
)
@click.option(
    "--target",
    type=click.Choice(["inf2", "trn1", "trn1n", "trn2"]),
    help="Neuron tracer: the instance family the model will run on (neuronx-cc --target). Tracing runs on "
    "CPU, so the compile needs no NeuronCore.",
)
@click.option(
    "--logical-nc-config",
    type=click.Choice(["1", "2"]),
    help="trn2 only: NeuronCores per logical core, as the nodes run (default 2, the runtime's default).",
)
@click.option(
    "--attention",
    type=click.Choice(["sdpa", "bmm", "nki"]),
    help="How the UNet computes attention: bmm (the Neuron default: the AWS sample's fused softmax), nki (the "
    "sample's NKI kernel; needs neuronx-cc) or sdpa (diffusers' default; the jit default).",
)
@click.option(
    "--cores",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="NeuronCores the UNet will be spread over.",
)
@click.option(
    "--pack",
    "tarball",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also pack the result into this tarball (+ .sha256).",
)
def compile_command(
    model_dir: Path,
    out: Path,
    tracer: str,
    target: str | None,
    logical_nc_config: str | None,
    attention: str | None,
    cores: int,
    tarball: Path | None,
) -> None:
    """Trace the text encoder, UNet, VAE decoder and post_quant_conv; write the layout the server loads."""
    # The sample sets this before torch_neuronx is imported: the compiler fuses the attention softmax.
    os.environ.setdefault("NEURON_FUSE_SOFTMAX", "1")
    from .artefacts import pack
    from .neuron import CompileTarget, compile_pipeline, import_torch_neuronx

    if tracer == "auto":
        import_torch_neuronx()  # auto means Neuron; say so plainly where it is missing
        tracer = "neuron"
    if tracer == "neuron" and target is None:
        raise click.UsageError(
            "--tracer neuron needs --target (inf2, trn1, trn1n or trn2): the instance family the model runs on"
        )
    if tracer == "jit" and (target or logical_nc_config):
        raise click.UsageError("--target and --logical-nc-config are for --tracer neuron")
    if logical_nc_config and target != "trn2":
        raise click.UsageError(f"--logical-nc-config is for --target trn2 (NeuronCore-v3), not {target}")
    compile_target = CompileTarget.of(target, int(logical_nc_config) if logical_nc_config else None) if target else None
    manifest = compile_pipeline(model_dir, out, tracer, cores, compile_target, attention)
    where = f", {manifest['target']}" + (
        f" LNC={manifest['logical_nc_config']}" if manifest["logical_nc_config"] else ""
    )
    click.echo(
        f"compiled {model_dir} -> {out} ({manifest['tracer']}{where if manifest['target'] else ''}, "
        f"{manifest['image_size'][0]}x{manifest['image_size'][1]}, attention {manifest['attention']})"
    )
    if tarball is not None:
        digest = pack(out, tarball)
        click.echo(f"packed {tarball} sha256 {digest}")


@cli.command("pack")
@click.option("--model-dir", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
def pack_command(model_dir: Path, out: Path) -> None:
    """Pack a model directory into a tarball with a .sha256 beside it, for S3."""
    from .artefacts import pack

    click.echo(f"packed {out} sha256 {pack(model_dir, out)}")


@cli.command("fetch-model")
@click.option("--uri", envvar="MODEL_S3_URI", default="", help="S3 URI of the model tarball (default: $MODEL_S3_URI).")
@click.option(
    "--sha256",
    envvar="MODEL_SHA256",
    default="",
    help="Its expected sha256 (default: $MODEL_SHA256; empty: read <uri>.sha256).",
)
@click.option(
    "--model-dir",
    envvar="MODEL_DIR",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to unpack it (default: $MODEL_DIR).",
)
@click.option(
    "--work-dir",
    envvar="WORK_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Scratch space for the download (default: $WORK_DIR, else MODEL_DIR/.download).",
)
def fetch_model_command(uri: str, sha256: str, model_dir: Path, work_dir: Path | None) -> None:
    """Download the model tarball from S3, verify its sha256, unpack it (the chart's initContainer)."""
    from .artefacts import fetch_model

    fetch_model(uri, model_dir, sha256, work_dir, say=click.echo)


@cli.command("upload-model")
@click.option(
    "--file", "tarball", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The packed tarball."
)
@click.option("--uri", envvar="MODEL_S3_URI", default="", help="S3 URI to upload it to (default: $MODEL_S3_URI).")
def upload_model_command(tarball: Path, uri: str) -> None:
    """Upload a packed tarball to S3, then its .sha256 beside it (the chart's compile Job)."""
    from .artefacts import upload_model

    upload_model(tarball, uri, say=click.echo)


@cli.command("build-random-model")
@click.option("--preset", type=click.Choice(["tiny", "sd21-base"]), default="tiny", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True)
def build_random_model(preset: str, out: Path, seed: int) -> None:
    """Write an SD-2.x-shaped pipeline with random weights (no downloads)."""
    from .random_model import build_random_pipeline

    build_random_pipeline(preset, out, seed)
    click.echo(f"wrote {preset} pipeline to {out}")


@cli.command("check-node")
@click.option(
    "--node", envvar="NODE_NAME", required=True, help="The node to check (default: $NODE_NAME, this pod's node)."
)
@click.option("--instance-type", required=True, help="The instance type the release was rendered for.")
@click.option(
    "--devices", type=click.IntRange(min=0), required=True, help="aws.amazon.com/neuron the catalog says it has."
)
@click.option(
    "--cores", type=click.IntRange(min=0), required=True, help="aws.amazon.com/neuroncore the catalog says it has."
)
@click.option("--api-server", help="API server URL (default: the in-cluster one).")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Bearer token (with --api-server).",
)
@click.option(
    "--ca-file", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="CA bundle (with --api-server)."
)
def check_node_command(
    node: str,
    instance_type: str,
    devices: int,
    cores: int,
    api_server: str | None,
    token_file: Path | None,
    ca_file: Path | None,
) -> None:
    """Check that a node reports the Neuron devices and cores of its instance type (the chart's helm test)."""
    from .nodecheck import ApiAccess, CheckFailed, check_node

    try:
        api = (
            ApiAccess(api_server, token_file.read_text().strip() if token_file else "", ca_file)
            if api_server
            else ApiAccess.in_cluster()
        )
        click.echo(check_node(api, node, instance_type, devices, cores))
    except CheckFailed as error:
        click.echo(f"check-node: FAILED: {error}", err=True)
        raise SystemExit(int(ExitCode.FAILURE)) from None


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cli(prog_name="eks-neuron-serve")


if __name__ == "__main__":
    main()
