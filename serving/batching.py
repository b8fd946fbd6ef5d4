"""Dynamic batching: compatible requests share a pipeline call, up to a size, within a wait.

Requests queue while the model is busy and the next call takes every compatible one (up to the
maximum batch size). When fewer are waiting than the previous batch held, the batcher holds the
batch open for at most max_wait for the rest to arrive; an idle server never waits.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from .metrics import ServerMetrics
from .pipeline import BatchKey, ImageRequest

RunBatch = Callable[[BatchKey, Sequence[ImageRequest]], list[Any]]


class QueueFull(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"queue full; retry in {retry_after_s}s")
        self.retry_after_s = retry_after_s


class RequestTimedOut(Exception):
    pass


class Draining(Exception):
    pass


@dataclasses.dataclass
class _Pending:
    key: BatchKey
    request: ImageRequest
    future: asyncio.Future[Any]
    enqueued: float


class Batcher:
    def __init__(
        self,
        run_batch: RunBatch,
        metrics: ServerMetrics,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        executor: concurrent.futures.Executor,
    ) -> None:
        self._run_batch = run_batch
        self._metrics = metrics
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._queue: collections.deque[_Pending] = collections.deque()
        self._wakeup = asyncio.Event()
        self._inflight = 0
        self._draining = False
        self._worker: asyncio.Task[None] | None = None
        # The model's own single thread (see Server): one pipeline call at a time.
        self._executor = executor
        self._batch_seconds = 1.0  # running estimate, for Retry-After
        self._recent_batch_size = 1

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def inflight(self) -> int:
        return self._inflight

    def start(self) -> None:
        self._worker = asyncio.create_task(self._work(), name="batcher")

    async def submit(self, key: BatchKey, request: ImageRequest, timeout_s: float) -> Any:
        if self._draining:
            self._metrics.rejected.labels("draining").inc()
            raise Draining()
        if len(self._queue) >= self.max_queue:
            self._metrics.rejected.labels("queue_full").inc()
            raise QueueFull(self._retry_after())
        pending = _Pending(key, request, asyncio.get_running_loop().create_future(), time.monotonic())
        self._queue.append(pending)
        self._metrics.queue_depth.set(len(self._queue))
        self._wakeup.set()
        try:
            return await asyncio.wait_for(asyncio.shield(pending.future), timeout_s)
        except asyncio.TimeoutError:
            self._metrics.rejected.labels("timeout").inc()
            if pending in self._queue:
                # Still waiting: give its slot back. A running one finishes; its result is dropped.
                self._queue.remove(pending)
                self._metrics.queue_depth.set(len(self._queue))
            pending.future.cancel()
            raise RequestTimedOut() from None

    def _retry_after(self) -> int:
        batches_ahead = math.ceil((len(self._queue) + self._inflight) / self.max_batch_size)
        return max(1, math.ceil(batches_ahead * self._batch_seconds))

    def _take_batch(self) -> list[_Pending]:
        key = self._queue[0].key
        batch = [p for p in self._queue if p.key == key][: self.max_batch_size]
        for pending in batch:
            self._queue.remove(pending)
        self._metrics.queue_depth.set(len(self._queue))
        return batch

    def _compatible_waiting(self) -> int:
        key = self._queue[0].key
        return sum(1 for p in self._queue if p.key == key)

    async def _hold_for_company(self) -> None:
        """Holds the batch open (at most max_wait) only when the last batch says more requests are
        coming: at low load nothing waits, under load batches fill up to the recent size."""
        target = min(self.max_batch_size, self._recent_batch_size)
        if self.max_wait_s <= 0 or self._compatible_waiting() >= target:
            return
        deadline = time.monotonic() + self.max_wait_s
        while self._queue and self._compatible_waiting() < target:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                return

    async def _run(self, batch: list[_Pending]) -> None:
        """One pipeline call on the model thread; each request of the batch gets its image or the error."""
        self._recent_batch_size = len(batch)
        self._inflight = len(batch)
        self._metrics.inflight.set(self._inflight)
        self._metrics.batch_size.observe(len(batch))
        started = time.perf_counter()
        try:
            images = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._run_batch, batch[0].key, [p.request for p in batch]
            )
        except Exception as error:  # the pipeline failed: every request of the batch gets the error
            self._metrics.rejected.labels("error").inc(len(batch))
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
        else:
            elapsed = time.perf_counter() - started
            self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * elapsed
            self._metrics.generation_seconds.observe(elapsed)
            self._metrics.images.inc(len(images))
            for pending, image in zip(batch, images, strict=True):
                if not pending.future.done():
                    pending.future.set_result(image)
        finally:
            self._inflight = 0
            self._metrics.inflight.set(0)

    async def _work(self) -> None:
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._hold_for_company()
            if self._queue:
                await self._run(self._take_batch())

    async def drain(self, timeout_s: float) -> bool:
        """Stops taking requests and waits for queued and running ones; True if all finished."""
        self._draining = True
        deadline = time.monotonic() + timeout_s
        while (self._queue or self._inflight) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return not self._queue and not self._inflight

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for pending in self._queue:
            if not pending.future.done():
                pending.future.set_exception(Draining())
        self._queue.clear()

    @property
    def draining(self) -> bool:
        return self._draining
