"""Server settings, read from the environment (prefix SD_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Backend = Literal["auto", "neuron", "cuda", "cpu"]
# torch.compile modes for the CUDA backend's UNet (see pipeline.compile_unet); off runs it eagerly.
CompileMode = Literal["off", "reduce-overhead", "max-autotune"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SD_", extra="forbid")

    model_dir: Path = Field(
        Path("/models/sd21"), description="Diffusers pipeline directory, with neuron/ when compiled"
    )
    backend: Backend = "auto"
    max_batch_size: int = Field(4, ge=1, le=64)
    # Longest a batch is held open for company (see batching.BatchPolicy: a quarter of a batch's
    # duration at most, only while requests arrive faster than batches complete); 0 never holds.
    max_batch_wait_ms: float = Field(500.0, ge=0, le=10_000)
    max_queue: int = Field(32, ge=1)
    request_timeout_s: float = Field(120.0, gt=0)
    default_steps: int = Field(50, ge=1, le=150)
    warmup_steps: int = Field(1, ge=0, le=150)
    # Seconds a shutdown waits for queued and running requests before giving up on them.
    drain_timeout_s: float = Field(60.0, ge=0)
    # NeuronCores the UNet is spread over (torch_neuronx.DataParallel); match the pod's neuroncore request.
    neuron_cores: int = Field(2, ge=1)
    # CUDA only: compile the UNet (channels_last, batches padded to a few sizes so the compiled
    # graphs are reused); compile and warm-up of every padded size happen before /ready.
    compile: CompileMode = "off"
    # Output encodings (chosen per request by response_format or Accept); encoding runs off the model thread.
    png_compress_level: int = Field(6, ge=0, le=9)
    jpeg_quality: int = Field(90, ge=1, le=95)
    webp_quality: int = Field(90, ge=1, le=100)
    # The id the OpenAI-compatible API serves the model under (GET /v1/models, the request's `model`),
    # and other names requests may use for it (comma-separated).
    model_id: str = Field("stable-diffusion-2-1-base", min_length=1, pattern=r"^\S+$")
    model_aliases: str = Field("stabilityai/stable-diffusion-2-1-base,sd21", pattern=r"^[^\s]*$")
    # Bearer tokens: a directory of files, one token each, named by their key (a mounted Secret); unset: no
    # authentication. /health and /ready never ask for one; /metrics only with metrics_require_token.
    api_tokens_dir: Path | None = None
    metrics_require_token: bool = False
    # What one client may hold (see connections.py): time to send a request's headers, then its body; the
    # body's size; open connections, all clients together.
    header_timeout_s: float = Field(10.0, gt=0)
    body_timeout_s: float = Field(30.0, gt=0)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    max_header_bytes: int = Field(16_384, ge=1024)
    max_connections: int = Field(512, ge=1)
    # Queued generation (`eks-neuron-serve worker`, worker.py): the job queue, where failed jobs go with
    # their reason (empty: the queue's redrive policy moves them, without it), where images go; how long
    # a received job stays hidden from other workers (extended while it runs), the tries a job gets,
    # the wait before a failed job's retry, the long poll, and the messages taken per receive.
    queue_url: str = ""
    queue_dead_letter_url: str = ""
    queue_output_uri: str = Field("", pattern=r"^(s3://[^/]+(/.*)?)?$")
    queue_visibility_timeout_s: int = Field(300, ge=1, le=43_200)
    queue_max_receives: int = Field(3, ge=1, le=1000)
    queue_retry_delay_s: int = Field(10, ge=0, le=43_200)
    queue_wait_s: int = Field(20, ge=0, le=20)
    queue_messages: int = Field(4, ge=1, le=10)
    # The HTTP server's address; the worker serves its /metrics there.
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)

    def model_names(self) -> tuple[str, ...]:
        """The served model's id, then its aliases."""
        return (self.model_id, *(name for name in self.model_aliases.split(",") if name))
