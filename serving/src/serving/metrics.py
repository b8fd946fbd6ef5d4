"""Prometheus metrics of the server, in a registry of its own (one per app instance)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Seconds per request or batch: from a compiled GPU's fraction of a second to a CPU's minutes, with
# bounds close enough around the SLO range (a few seconds to 30 s) that p95 / p99 are read inside a
# narrow bucket rather than interpolated across 15-30 s.
LATENCY_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.5, 10.0, 12.5, 15.0,
    20.0, 25.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0,
)  # fmt: skip
# Seconds per denoising step, covering every backend the server runs on (STEP_SECONDS_MEASURED in the
# tests holds the figures): a compiled H100 at about 8 ms, Neuron at about 34 ms, the tiny test model
# on a loaded CPU past 1 s, a full-size model on CPU tens of seconds.
STEP_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.05, 0.06, 0.075,
    0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0, 120.0,
)  # fmt: skip
IMAGE_FORMATS = ("png", "jpeg", "webp")
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "sd_http_requests",
            "HTTP requests by route, method and status code.",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "sd_http_request_duration_seconds",
            "HTTP request latency by route and status code.",
            ["route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("sd_queue_depth", "Image requests waiting for a batch slot.", registry=r)
        self.queue_capacity = Gauge(
            "sd_queue_capacity", "Image requests the queue holds before answering 429.", registry=r
        )
        self.inflight = Gauge("sd_inflight_requests", "Image requests being generated now.", registry=r)
        self.batch_size = Histogram("sd_batch_size", "Images per pipeline call.", buckets=BATCH_BUCKETS, registry=r)
        self.images = Counter("sd_images_generated", "Images generated.", registry=r)
        self.rejected = Counter(
            "sd_rejected_requests", "Image requests refused or abandoned, by reason.", ["reason"], registry=r
        )
        self.generation_seconds = Histogram(
            "sd_generation_duration_seconds", "Pipeline call latency per batch.", buckets=LATENCY_BUCKETS, registry=r
        )
        self.step_seconds = Histogram(
            "sd_denoising_step_duration_seconds",
            "Latency of one denoising step (UNet with guidance, and scheduler) per batch.",
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.encode_seconds = Histogram(
            "sd_image_encode_duration_seconds",
            "Image encoding latency per image, by format (png, jpeg, webp).",
            ["format"],
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.model_load_seconds = Gauge(
            "sd_model_load_seconds", "Seconds the model took to load and warm up.", registry=r
        )
        self.model_load_phase_seconds = Gauge(
            "sd_model_load_phase_seconds",
            "Seconds of each start-up phase: load (weights onto the device), warmup (first calls; compile when on).",
            ["phase"],
            registry=r,
        )
        self.ready = Gauge("sd_ready", "1 when the model is loaded and warm and the server takes requests.", registry=r)
        self.info = Gauge("sd_model_info", "The loaded model.", ["backend", "traced", "width", "height"], registry=r)
        self.open_connections = Gauge(
            "sd_http_connections", "Open client connections (capped by SD_MAX_CONNECTIONS).", registry=r
        )
        self.authenticated_requests = Counter(
            "sd_authenticated_requests",
            "Requests that presented a valid bearer token, by the token's name (its key in the Secret).",
            ["token"],
            registry=r,
        )
        for reason in ("queue_full", "timeout", "draining", "error", "unauthenticated"):
            self.rejected.labels(reason)
        for image_format in IMAGE_FORMATS:
            self.encode_seconds.labels(image_format)


class WorkerMetrics(ServerMetrics):
    """The HTTP server's metrics (batches, steps, images, load) and the queue's."""

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.jobs_received = Counter("sd_queue_jobs_received", "Job messages received.", registry=r)
        self.jobs_redelivered = Counter(
            "sd_queue_jobs_redelivered", "Job messages received more than once (a worker died or a job failed).",
            registry=r,
        )  # fmt: skip
        self.jobs_succeeded = Counter("sd_queue_jobs_succeeded", "Jobs completed (result.json written).", registry=r)
        self.jobs_failed = Counter(
            "sd_queue_jobs_failed", "Job attempts that failed, by reason (invalid, prompts, generation, output).",
            ["reason"], registry=r,
        )  # fmt: skip
        self.jobs_dead_lettered = Counter(
            "sd_queue_jobs_dead_lettered", "Jobs sent to the dead-letter queue.", registry=r
        )
        self.jobs_returned = Counter(
            "sd_queue_jobs_returned", "Jobs handed back to the queue unfinished at shutdown.", registry=r
        )
        self.jobs_in_hand = Gauge("sd_queue_jobs_in_hand", "Job messages this worker holds now.", registry=r)
        # SQS's own counts, read at each receive (CloudWatch has them too, minutes late).
        self.queue_messages = Gauge(
            "sd_queue_messages", "Messages in the job queue by state (visible, in_flight, delayed), as SQS counts them.",
            ["queue", "state"], registry=r,
        )  # fmt: skip
        self.job_age_seconds = Histogram(
            "sd_queue_job_age_seconds",
            "Seconds from a job's first send to each receive: how long the oldest work waits.",
            buckets=LATENCY_BUCKETS + (900.0, 1800.0, 3600.0, 7200.0, 21600.0, 43200.0),
            registry=r,
        )
        for reason in ("invalid", "prompts", "generation", "output"):
            self.jobs_failed.labels(reason)
