"""Prometheus metrics of the server, in a registry of its own (one per app instance)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0)
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0)
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
