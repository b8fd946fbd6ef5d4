"""The state the routes share: settings, metrics, the generator once loaded, the batcher."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from .batching import Batcher, Clock, SleepUntil
from .metrics import ServerMetrics
from .pipeline import BatchKey, ImageGenerator
from .settings import Settings

log = logging.getLogger(__name__)


class Server:
    def __init__(
        self,
        settings: Settings,
        load: Callable[[Settings], ImageGenerator],
        clock: Clock = time.monotonic,
        sleep_until: SleepUntil | None = None,
    ) -> None:
        self.settings = settings
        self.load = load
        self.clock = clock
        self.sleep_until = sleep_until
        self.metrics = ServerMetrics()
        self.metrics.queue_capacity.set(settings.max_queue)
        self.generator: ImageGenerator | None = None
        self.batcher: Batcher | None = None
        self.loading: asyncio.Task[None] | None = None
        # Every torch call (load, warm-up, batches) runs on this one thread: each thread that enters
        # torch gets its own OpenMP team, and two teams spinning on the same cores halve the speed.
        self.model_thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.load_error: str | None = None
        self.ready = False
        # When this server started: the served model's `created` in the OpenAI model list.
        self.started = int(time.time())

    def run_batch(self, key: BatchKey, requests: Any) -> list[Any]:
        assert self.generator is not None
        return self.generator.generate(key, requests, on_step=self.metrics.step_seconds.observe)

    @staticmethod
    def _warmed(batch_size: int, seconds: float) -> None:
        log.info("warm-up at batch size %d took %.1fs", batch_size, seconds)

    def start_loading(self) -> None:
        """Loads in the background so /health answers during a long load and /ready says when it is done."""
        self.loading = asyncio.create_task(self._load(), name="model-load")

    async def _load(self) -> None:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            self.generator = await loop.run_in_executor(self.model_thread, self.load, self.settings)
            loaded = time.perf_counter()
            self.metrics.model_load_phase_seconds.labels("load").set(loaded - started)
            if self.settings.warmup_steps or self.generator.compiled != "off":
                # The first call pays for lazy initialisation (on Neuron, loading onto the cores; when
                # compiled, the compile and CUDA graph capture of each padded batch size).
                await loop.run_in_executor(
                    self.model_thread, self.generator.warm_up, max(1, self.settings.warmup_steps), self._warmed
                )
            self.metrics.model_load_phase_seconds.labels("warmup").set(time.perf_counter() - loaded)
        except Exception as error:  # reported by /health so the kubelet restarts the pod
            self.load_error = f"{type(error).__name__}: {error}"
            log.error("model load failed: %s", self.load_error)
            return
        self.metrics.model_load_seconds.set(time.perf_counter() - started)
        g = self.generator
        self.metrics.info.labels(g.backend, str(g.traced).lower(), str(g.width), str(g.height)).set(1)
        self.batcher = Batcher(
            self.run_batch,
            self.metrics,
            self.settings.max_batch_size,
            self.settings.max_batch_wait_ms / 1000.0,
            self.settings.max_queue,
            self.model_thread,
            self.clock,
            self.sleep_until,
        )
        self.batcher.start()
        self.ready = True
        self.metrics.ready.set(1)
        log.info("ready: %s backend, %dx%d images", g.backend, g.width, g.height)

    @property
    def taking_requests(self) -> bool:
        return self.ready and self.batcher is not None and not self.batcher.draining

    @property
    def status(self) -> str:
        if self.taking_requests:
            return "ready"
        if self.load_error:
            return "failed"
        return "draining" if self.batcher and self.batcher.draining else "loading"

    async def stop(self) -> None:
        self.ready = False
        self.metrics.ready.set(0)
        if self.loading is not None and not self.loading.done():
            self.loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.loading
        if self.batcher is not None:
            finished = await self.batcher.drain(self.settings.drain_timeout_s)
            if not finished:
                log.warning("drain timed out after %.0fs; dropping queued requests", self.settings.drain_timeout_s)
            await self.batcher.close()
        self.model_thread.shutdown(wait=True, cancel_futures=True)
