"""*Neuron / Stable Diffusion serving*: the model server's traffic, latency, queue, batches and replicas."""

from __future__ import annotations

from .spec import (
    GREEN,
    IMAGES_PER_SECOND,
    ORANGE,
    RED,
    ROUTE,
    AlertLimits,
    DashboardSpec,
    Link,
    PanelSpec,
    Row,
    Variable,
    query,
    zero_if_scraped,
)

SD_JOB = Variable("job", "Serving job", "label_values(sd_ready, job)")


NO_REQUESTS = "no requests in range"


# The image route's request rate, and its 5xx part (recording rules of the serving chart).
REQUESTS = f'job_route_status:sd_http_requests:rate5m{{job=~"$job", route="{ROUTE}"}}'
FAILED = f'job_route_status:sd_http_requests:rate5m{{job=~"$job", route="{ROUTE}", status=~"5.."}}'


def serving(limits: AlertLimits) -> DashboardSpec:
    return DashboardSpec(
        uid="sd21-serving",
        title="Neuron / Stable Diffusion serving",
        description="Requests, latency, queue, batching and throughput of the SD 2.1 servers.",
        variables=(SD_JOB,),
        links=(Link("Scheduling", "/d/neuron-scheduler/neuron-scheduling"),),
        rows=(_traffic_row(limits), _capacity_row(limits)),
    )


def _traffic_row(limits: AlertLimits) -> Row:
    return (
        "Traffic",
        (
            PanelSpec(
                "Requests per second by status",
                (query(f"sum by (status) ({REQUESTS})", "{{status}}"),),
                "Image requests per second by HTTP status (sd_http_requests_total). 429: the queue is full; "
                "504: requests waited past the timeout; 503: replicas loading or draining.",
                unit="reqps",
                minimum=0,
                no_value=NO_REQUESTS,
            ),
            PanelSpec(
                "Latency p50 / p95 / p99",
                (
                    *(
                        query(f'max(job:sd_image_request_duration_seconds:p{q}_5m{{job=~"$job"}})', f"p{q}")
                        for q in (50, 95, 99)
                    ),
                    # The SLO as a named series too (only while there is traffic), so the legend says
                    # what the red line is.
                    query(
                        f'max(job:sd_image_request_duration_seconds:p99_5m{{job=~"$job"}}) * 0 + {limits.p99_latency_slo_s:g}',
                        "p99 SLO",
                    ),
                ),
                "Latency of successful image requests, queueing included (sd_http_request_duration_seconds). "
                "The red line, 'p99 SLO' in the legend, is where SDServingLatencyOverSLO alerts: scale out, "
                "or lower maxBatchSize.",
                unit="s",
                minimum=0,
                thresholds=((None, GREEN), (limits.p99_latency_slo_s, RED)),
                no_value=NO_REQUESTS,
            ),
            PanelSpec(
                "Share of requests answered 5xx",
                (
                    query(
                        zero_if_scraped(
                            f"sum({FAILED}) / sum({REQUESTS})",
                            REQUESTS,
                        ),
                        "5xx",
                    ),
                ),
                "Image requests answered 5xx over all image requests. The red line is where SDServingErrors "
                "fires; look at the server logs for generation_failed.",
                unit="percentunit",
                thresholds=((None, GREEN), (limits.error_ratio, RED)),
                no_value=NO_REQUESTS,
            ),
            PanelSpec(
                "Rejected requests by reason",
                (
                    query(
                        'sum by (reason) (rate(sd_rejected_requests_total{job=~"$job"}[$__rate_interval]))',
                        "{{reason}}",
                    ),
                ),
                "Requests refused or abandoned per second (sd_rejected_requests_total): queue_full (429), "
                "timeout (504), draining, error. queue_full rising: add replicas or nodes.",
                unit="reqps",
                minimum=0,
            ),
        ),
    )


def _capacity_row(limits: AlertLimits) -> Row:
    # Long, and kept whole: it is data (five panels as a reader sees them, top to bottom), not logic.
    return (
        "Capacity",
        (
            PanelSpec(
                "Ready replicas",
                (query('sum(sd_ready{job=~"$job"})', "ready"),),
                "Replicas that have loaded the model and take requests (sd_ready). 0 is red: nothing serves.",
                kind="stat",
                width=6,
                thresholds=((None, RED), (1, GREEN)),
            ),
            PanelSpec(
                "Images per second",
                (query('sum(job:sd_images_generated:rate5m{job=~"$job"})', "images/s"),),
                "Images generated per second across replicas (sd_images_generated_total).",
                unit=IMAGES_PER_SECOND,
                width=6,
                minimum=0,
                no_value=NO_REQUESTS,
            ),
            PanelSpec(
                "Queue fill (worst replica)",
                (query('max(sd_queue_depth{job=~"$job"} / sd_queue_capacity{job=~"$job"})', "queued / capacity"),),
                "Queued requests over the queue's capacity on the fullest replica. Orange from the ratio "
                "SDServingQueueSaturated alerts at; at 1 requests get 429.",
                unit="percentunit",
                width=12,
                thresholds=((None, GREEN), (limits.queue_saturation_ratio, ORANGE)),
            ),
            PanelSpec(
                "Queue depth and in flight",
                (
                    query('sum(sd_queue_depth{job=~"$job"})', "queued"),
                    query('sum(sd_inflight_requests{job=~"$job"})', "in flight"),
                ),
                "Requests waiting and being generated, all replicas (sd_queue_depth, sd_inflight_requests), "
                "stacked as steps: the top is every request a replica holds.",
                unit="short",
                minimum=0,
                stacked=True,
                draw="steps",
            ),
            PanelSpec(
                "Mean batch size",
                (
                    query(
                        'sum(rate(sd_batch_size_sum{job=~"$job"}[$__rate_interval])) / sum(rate(sd_batch_size_count{job=~"$job"}[$__rate_interval]))',
                        "images per call",
                    ),
                ),
                "Images per pipeline call (sd_batch_size). Near 1 under load: requests differ in steps or "
                "guidance, so they cannot share a call.",
                unit="short",
                minimum=0,
                no_value=NO_REQUESTS,
            ),
            PanelSpec(
                "Denoising step latency p50 / p99",
                tuple(
                    query(
                        f'histogram_quantile({q}, sum by (le) (rate(sd_denoising_step_duration_seconds_bucket{{job=~"$job"}}[$__rate_interval])))',
                        f"p{int(q * 100)}",
                    )
                    for q in (0.5, 0.99)
                ),
                "One denoising step (UNet and scheduler) per batch (sd_denoising_step_duration_seconds). "
                "Rising at the same batch size: the cores are shared or throttled.",
                unit="s",
                minimum=0,
                no_value=NO_REQUESTS,
            ),
            PanelSpec(
                "Model load time",
                (query('max by (instance) (sd_model_load_seconds{job=~"$job"})', "{{instance}}"),),
                "Seconds each replica took to load and warm up (sd_model_load_seconds): how long a new "
                "replica takes to help.",
                unit="s",
                kind="stat",
                stat_text="value_and_name",
            ),
        ),
    )
