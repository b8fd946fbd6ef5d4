"""*Neuron / Stable Diffusion serving*: the model server's traffic, latency, queue, batches and replicas."""

from __future__ import annotations

from .spec import (
    GREEN,
    IMAGES_PER_SECOND,
    JOBS_PER_SECOND,
    ORANGE,
    RED,
    ROUTE,
    AlertLimits,
    DashboardSpec,
    Link,
    PanelSpec,
    Reads,
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
        rows=(_traffic_row(limits), _capacity_row(limits), _queue_row()),
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
                reads=Reads(
                    idle='"no requests in range"',
                    busy="200s; a few 429 at peaks",
                    broken="5xx, or 429/504 that persist: replicas failing or too few",
                ),
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
                reads=Reads(
                    idle='"no requests in range"',
                    busy="lines under the red p99 SLO line",
                    broken="p99 above the SLO line (SDServingLatencyOverSLO)",
                ),
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
                reads=Reads(
                    idle='"no requests in range"',
                    busy="0 on the 0-100 % axis, the red line visible",
                    broken="at or above the red line (SDServingErrors)",
                ),
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
                reads=Reads(
                    idle="0 on an axis up to 1",
                    busy="0, a little queue_full at peaks",
                    broken="queue_full or timeout that persist (too few replicas), error (generation failing)",
                ),
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
                reads=Reads(
                    idle="the replica count, green",
                    busy="the replica count, green",
                    broken="0, red: nothing serves",
                ),
            ),
            PanelSpec(
                "Images per second",
                (query('sum(job:sd_images_generated:rate5m{job=~"$job"})', "images/s"),),
                "Images generated per second across replicas (sd_images_generated_total).",
                unit=IMAGES_PER_SECOND,
                width=6,
                minimum=0,
                no_value=NO_REQUESTS,
                reads=Reads(
                    idle='"no requests in range"',
                    busy="images per second across replicas",
                    broken="falling while requests keep arriving",
                ),
            ),
            PanelSpec(
                "Queue fill (worst replica)",
                (query('max(sd_queue_depth{job=~"$job"} / sd_queue_capacity{job=~"$job"})', "queued / capacity"),),
                "Queued requests over the queue's capacity on the fullest replica. Orange from the ratio "
                "SDServingQueueSaturated alerts at; at 1 requests get 429.",
                unit="percentunit",
                width=12,
                thresholds=((None, GREEN), (limits.queue_saturation_ratio, ORANGE)),
                reads=Reads(
                    idle="0 on the 0-100 % axis",
                    busy="below the orange line",
                    broken="at or above the orange line (SDServingQueueSaturated); at 100 % requests get 429",
                ),
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
                reads=Reads(
                    idle="0",
                    busy="in flight up to the batch size, queued stacked above it",
                    broken="queued climbing and staying: more arrives than the replicas serve",
                ),
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
                reads=Reads(
                    idle='"no requests in range"',
                    busy="above 1 under load",
                    broken="near 1 under load: requests differ in steps or guidance and cannot share a call",
                ),
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
                reads=Reads(
                    idle='"no requests in range"',
                    busy="steady at the backend's step time (about 34 ms on Neuron)",
                    broken="rising at the same batch size: cores shared or throttled",
                ),
            ),
            PanelSpec(
                "Model load time",
                (query('max by (instance) (sd_model_load_seconds{job=~"$job"})', "{{instance}}"),),
                "Seconds each replica took to load and warm up (sd_model_load_seconds): how long a new "
                "replica takes to help.",
                unit="s",
                kind="stat",
                stat_text="value_and_name",
                reads=Reads(
                    idle="each replica's load time",
                    busy="the same",
                    broken="no data for a replica that never loaded; minutes where seconds are usual: the model fetch is slow",
                ),
            ),
        ),
    )


NO_JOBS = "no queue workers, or no jobs in range"


def _queue_row() -> Row:
    """The queue workers (server.mode queue or both): SQS's counts as the workers read them, how long
    jobs waited, and what became of them."""
    return (
        "Queued jobs",
        (
            PanelSpec(
                "Job queue messages",
                (
                    # Every worker reads the same queue's counts: one per queue, then summed by state.
                    query(
                        'sum by (state) (max by (queue, state) (sd_queue_messages{job=~"$job"}))',
                        "{{state}}",
                    ),
                ),
                "Messages in the job queue as SQS counts them at each worker's receive (sd_queue_messages): "
                "visible (waiting), in_flight (held by a worker), delayed; stacked. KEDA scales the workers "
                "on visible plus in flight.",
                unit="short",
                minimum=0,
                stacked=True,
                draw="steps",
                no_value=NO_JOBS,
                reads=Reads(
                    idle="0, or no data with no workers",
                    busy="in_flight up to the workers' messagesPerReceive each, visible falling as they work",
                    broken="visible climbing and staying: jobs arrive faster than the workers finish them",
                ),
            ),
            PanelSpec(
                "Job wait before a worker took it",
                tuple(
                    query(
                        f'histogram_quantile({q}, sum by (le) (rate(sd_queue_job_age_seconds_bucket{{job=~"$job"}}[$__rate_interval])))',
                        label,
                    )
                    for q, label in ((0.5, "p50"), (1.0, "oldest (bucket bound)"))
                ),
                "Seconds from a job's first send to each time a worker received it (sd_queue_job_age_seconds): "
                "the age of the oldest waiting work, as the workers see it. Redeliveries count from the first "
                "send.",
                unit="s",
                minimum=0,
                no_value=NO_JOBS,
                reads=Reads(
                    idle='"no queue workers, or no jobs in range"',
                    busy="seconds: jobs are taken soon after they are sent",
                    broken="minutes and rising: too few workers (check maxReplicas), or workers not starting",
                ),
            ),
            PanelSpec(
                "Jobs per second",
                (
                    query('sum(rate(sd_queue_jobs_received_total{job=~"$job"}[$__rate_interval]))', "received"),
                    query('sum(rate(sd_queue_jobs_succeeded_total{job=~"$job"}[$__rate_interval]))', "succeeded"),
                    query('sum(rate(sd_queue_jobs_redelivered_total{job=~"$job"}[$__rate_interval]))', "redelivered"),
                ),
                "Job messages received, jobs completed (result.json written), and receives of a message seen "
                "before (a worker died or a try failed), per second.",
                unit=JOBS_PER_SECOND,
                minimum=0,
                no_value=NO_JOBS,
                reads=Reads(
                    idle="0 on an axis up to 1",
                    busy="succeeded following received, redelivered near 0",
                    broken="succeeded below received for long, or redelivered climbing: jobs fail or workers die",
                ),
            ),
            PanelSpec(
                "Job failures per second by reason",
                (
                    query(
                        'sum by (reason) (rate(sd_queue_jobs_failed_total{job=~"$job"}[$__rate_interval]))',
                        "{{reason}}",
                    ),
                    query(
                        'sum(rate(sd_queue_jobs_dead_lettered_total{job=~"$job"}[$__rate_interval]))',
                        "dead-lettered",
                    ),
                ),
                "Failed tries by reason (sd_queue_jobs_failed_total): invalid (never retried), prompts (the "
                "prompts object unreadable), generation, output (S3 writes). dead-lettered: jobs sent to the "
                "dead-letter queue, with the reason in their eks-neuron-failure attribute.",
                unit=JOBS_PER_SECOND,
                minimum=0,
                no_value=NO_JOBS,
                reads=Reads(
                    idle="0 on an axis up to 1",
                    busy="0",
                    broken="generation or output above 0: the model or S3 access is failing; read the dead-letter queue",
                ),
            ),
        ),
    )
