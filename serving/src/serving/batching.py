"""Dynamic batching: compatible requests share a pipeline call, up to a size.

Requests queue while the model is busy, and the next pipeline call takes every compatible one (same
steps and guidance scale, up to the maximum batch size). A request for n images (the OpenAI API's
`n`) is a group that is never split: its images share one pipeline call, and count n against the
queue and the batch. A batch of two costs the model little more
than a batch of one, so when the model falls free with fewer requests waiting than could share the
call, the batcher may hold the batch open briefly for company. `BatchPolicy` decides when.

HTTP clients mostly send their next request as soon as the previous image arrives. So the requests
the last batch answered are the ones expected back soon: when the model falls free and fewer requests
have arrived since that batch finished than it held, the batch is held open until they are back,
for at most min(max_wait, HOLD_FRACTION x the expected batch duration) after the batch finished.

- Two clients out of phase (one's request queued while the other's ran) meet in one batch, and stay
  in phase; eight clients in two groups of four merge into batches of eight.
- A single client never waits: its next request is the one the last batch answered.
- An idle server never waits: the hold ends a fraction of a batch after the last batch finished,
  and before a first batch has been timed there is nothing to go by.

All times come from one injected clock, so the policy is tested without waiting.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .metrics import ServerMetrics
from .pipeline import BatchKey, ImageRequest

RunBatch = Callable[[BatchKey, Sequence[ImageRequest]], list[Any]]
Clock = Callable[[], float]
# Returns once the clock reads at least the given time.
SleepUntil = Callable[[float], Awaitable[None]]

# A hold lasts at most this share of a batch's expected duration (and at most max_wait).
HOLD_FRACTION = 0.25
# Weight of the newest sample in the moving average of a batch's duration.
SMOOTHING = 0.3
# Retry-After before any batch was timed.
DEFAULT_BATCH_SECONDS = 1.0


class QueueFull(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"queue full; retry in {retry_after_s}s")
        self.retry_after_s = retry_after_s


class RequestTimedOut(Exception):
    pass


class Draining(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class Hold:
    """Hold the batch open until `until`, or until `target` compatible requests wait."""

    until: float
    target: int


@dataclasses.dataclass
class BatchPolicy:
    """When a batch starts: now, or after holding it open for company (see the module docstring)."""

    max_batch_size: int
    max_wait_s: float
    batch_s: float | None = None  # moving average of a pipeline call's duration
    last_finished: float | None = None  # when the last batch finished
    last_size: int = 0  # requests it answered
    arrived_since: int = 0  # requests that arrived after it finished

    def arrived(self, now: float) -> None:
        self.arrived_since += 1

    def finished(self, now: float, size: int, seconds: float) -> None:
        self.batch_s = seconds if self.batch_s is None else (1 - SMOOTHING) * self.batch_s + SMOOTHING * seconds
        self.last_finished, self.last_size, self.arrived_since = now, size, 0

    def hold(self, now: float, waiting: int) -> Hold | None:
        """How long to hold the batch open for the requests expected back, or None to start it now."""
        if self.max_wait_s <= 0 or self.batch_s is None or self.last_finished is None:
            return None
        until = self.last_finished + min(self.max_wait_s, HOLD_FRACTION * self.batch_s)
        expected_back = self.last_size - self.arrived_since
        target = min(self.max_batch_size, waiting + expected_back)
        if now >= until or expected_back <= 0 or waiting >= target:
            return None
        return Hold(until, target)

    def retry_after_s(self, waiting_and_running: int) -> int:
        batches_ahead = math.ceil(waiting_and_running / self.max_batch_size)
        return max(1, math.ceil(batches_ahead * (self.batch_s or DEFAULT_BATCH_SECONDS)))


@dataclasses.dataclass
class _Pending:
    """One submitted request: its images, which one pipeline call makes together."""

    key: BatchKey
    requests: list[ImageRequest]
    future: asyncio.Future[Any]
    enqueued: float

    @property
    def size(self) -> int:
        return len(self.requests)


class Batcher:
    def __init__(
        self,
        run_batch: RunBatch,
        metrics: ServerMetrics,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        executor: concurrent.futures.Executor,
        clock: Clock = time.monotonic,
        sleep_until: SleepUntil | None = None,
    ) -> None:
        self._run_batch = run_batch
        self._metrics = metrics
        self.policy = BatchPolicy(max_batch_size, max_wait_s)
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self._clock = clock
        # Holds and request timeouts end on the batcher's own clock: with an injected clock, at the
        # time it reads, not after as many seconds of this machine's time (a loaded machine would end
        # them early).
        self._sleep_until = sleep_until or self._sleep_until_monotonic
        self._queue: collections.deque[_Pending] = collections.deque()
        self._wakeup = asyncio.Event()
        self._inflight = 0
        self._draining = False
        self._worker: asyncio.Task[None] | None = None
        # The model's own single thread (see Server): one pipeline call at a time.
        self._executor = executor

    @property
    def queue_depth(self) -> int:
        """Images waiting for a batch."""
        return sum(p.size for p in self._queue)

    @property
    def inflight(self) -> int:
        return self._inflight

    def start(self) -> None:
        self._worker = asyncio.create_task(self._work(), name="batcher")

    async def submit(self, key: BatchKey, request: ImageRequest, timeout_s: float) -> Any:
        """One image."""
        [image] = await self.submit_group(key, [request], timeout_s)
        return image

    async def submit_group(self, key: BatchKey, requests: Sequence[ImageRequest], timeout_s: float) -> list[Any]:
        """Images made in one pipeline call, in order; at most the maximum batch size of them."""
        if not 1 <= len(requests) <= self.max_batch_size:
            raise ValueError(f"a group holds 1 to {self.max_batch_size} images, not {len(requests)}")
        if self._draining:
            self._metrics.rejected.labels("draining").inc()
            raise Draining()
        if self.queue_depth + len(requests) > self.max_queue:
            self._metrics.rejected.labels("queue_full").inc()
            raise QueueFull(self.policy.retry_after_s(self.queue_depth + self._inflight))
        now = self._clock()
        for _ in requests:
            self.policy.arrived(now)
        pending = _Pending(key, list(requests), asyncio.get_running_loop().create_future(), now)
        self._queue.append(pending)
        self._metrics.queue_depth.set(self.queue_depth)
        self._wakeup.set()
        try:
            images: list[Any] = await self._result_by(pending.future, now + timeout_s)
            return images
        except asyncio.TimeoutError:
            self._metrics.rejected.labels("timeout").inc()
            if pending in self._queue:
                # Still waiting: give its slots back. A running one finishes; its result is dropped.
                self._queue.remove(pending)
                self._metrics.queue_depth.set(self.queue_depth)
            pending.future.cancel()
            raise RequestTimedOut() from None

    async def _wait_until(self, awaited: asyncio.Future[Any], deadline: float) -> None:
        """Returns when `awaited` is done or the batcher's clock reads `deadline`, whichever comes first.
        It never cancels `awaited` (asyncio.wait does not): a request that gives up leaves its batch alone."""
        expired = asyncio.ensure_future(self._sleep_until(deadline))
        try:
            await asyncio.wait({awaited, expired}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            expired.cancel()

    async def _result_by(self, future: asyncio.Future[Any], deadline: float) -> Any:
        """The future's result, or asyncio.TimeoutError once the clock reads `deadline`: a timeout is
        measured on the batcher's clock, as holds are. A result that is there by then wins."""
        await self._wait_until(future, deadline)
        if future.done():
            return future.result()
        raise asyncio.TimeoutError

    def _take_batch(self) -> list[_Pending]:
        """The first waiting request and every compatible one after it that fits whole, in order."""
        key = self._queue[0].key
        batch: list[_Pending] = []
        room = self.max_batch_size
        for pending in self._queue:
            if pending.key == key and pending.size <= room:
                batch.append(pending)
                room -= pending.size
        for pending in batch:
            self._queue.remove(pending)
        self._metrics.queue_depth.set(self.queue_depth)
        return batch

    def _compatible_waiting(self) -> int:
        key = self._queue[0].key
        return sum(p.size for p in self._queue if p.key == key)

    async def _sleep_until_monotonic(self, until: float) -> None:
        await asyncio.sleep(max(0.0, until - self._clock()))

    async def _hold(self, hold: Hold) -> None:
        """Waits for company until hold.until, the queue empties, or hold.target requests wait."""
        while self._queue and self._compatible_waiting() < hold.target:
            if self._clock() >= hold.until:
                return
            self._wakeup.clear()
            woken = asyncio.ensure_future(self._wakeup.wait())
            try:
                await self._wait_until(woken, hold.until)
            finally:
                woken.cancel()

    async def _run(self, batch: list[_Pending]) -> None:
        """One pipeline call on the model thread; each request of the batch gets its images or the error."""
        requests = [request for pending in batch for request in pending.requests]
        self._inflight = len(requests)
        self._metrics.inflight.set(self._inflight)
        self._metrics.batch_size.observe(len(requests))
        started = self._clock()
        try:
            images = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._run_batch, batch[0].key, requests
            )
        except Exception as error:  # the pipeline failed: every request of the batch gets the error
            self._metrics.rejected.labels("error").inc(len(batch))
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
        else:
            finished = self._clock()
            elapsed = finished - started
            self.policy.finished(finished, len(requests), elapsed)
            self._metrics.generation_seconds.observe(elapsed)
            self._metrics.images.inc(len(images))
            offset = 0
            for pending in batch:
                mine, offset = images[offset : offset + pending.size], offset + pending.size
                if not pending.future.done():
                    pending.future.set_result(mine)
        finally:
            self._inflight = 0
            self._metrics.inflight.set(0)

    async def _work(self) -> None:
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            hold = self.policy.hold(self._clock(), self._compatible_waiting())
            if hold is not None:
                await self._hold(hold)
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
