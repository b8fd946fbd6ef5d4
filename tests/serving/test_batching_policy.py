"""The batch-hold policy, driven by a fake clock: decisions and their effect on simulated clients.

No test here waits on the wall clock: time is a number the test moves."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import heapq
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from serving.batching import HOLD_FRACTION, Batcher, BatchPolicy, RequestTimedOut
from serving.metrics import ServerMetrics
from serving.pipeline import BatchKey, ImageRequest


def after_batch(size: int = 2, batch_s: float = 2.0, max_wait_s: float = 10.0, at: float = 100.0) -> BatchPolicy:
    """A policy whose last batch of `size` took `batch_s` and finished at `at`."""
    policy = BatchPolicy(max_batch_size=8, max_wait_s=max_wait_s)
    policy.finished(at, size, batch_s)
    return policy


def test_nothing_timed_never_holds() -> None:
    policy = BatchPolicy(max_batch_size=8, max_wait_s=10)
    policy.arrived(0.0)
    assert policy.hold(0.0, 1) is None


def test_waits_for_the_requests_the_last_batch_answered() -> None:
    policy = after_batch(size=2, batch_s=2.0)
    policy.arrived(100.05)  # one of the two is back
    hold = policy.hold(100.05, 1)
    assert hold is not None and hold.target == 2
    assert hold.until == pytest.approx(100.0 + HOLD_FRACTION * 2.0)  # a fraction of a batch after it finished
    policy.arrived(100.06)
    assert policy.hold(100.06, 2) is None  # both back: go


def test_hold_is_bounded_by_max_wait_and_ends_after_the_batch() -> None:
    hold = after_batch(size=2, batch_s=2.0, max_wait_s=0.1).hold(100.0, 1)
    assert hold is not None and hold.until == pytest.approx(100.1)
    assert after_batch(size=2, batch_s=2.0).hold(100.0 + HOLD_FRACTION * 2.0, 1) is None


def test_a_single_client_never_waits() -> None:
    policy = after_batch(size=1)
    policy.arrived(100.05)  # the same client's next request
    assert policy.hold(100.05, 1) is None


def test_a_request_to_an_idle_server_never_waits() -> None:
    policy = after_batch(size=4)
    policy.arrived(700.0)  # ten minutes after the last batch
    assert policy.hold(700.0, 1) is None


def test_a_full_batch_or_max_wait_zero_never_holds() -> None:
    assert after_batch(size=8).hold(100.0, 8) is None
    policy = BatchPolicy(max_batch_size=8, max_wait_s=0)
    policy.finished(100.0, 2, 2.0)
    assert policy.hold(100.0, 1) is None


def test_target_never_exceeds_the_maximum_batch() -> None:
    policy = BatchPolicy(max_batch_size=4, max_wait_s=10)
    policy.finished(100.0, 4, 2.0)
    hold = policy.hold(100.0, 3)  # three queued while the batch of four ran
    assert hold is not None and hold.target == 4


def test_retry_after_follows_the_measured_batch_time() -> None:
    assert BatchPolicy(max_batch_size=4, max_wait_s=0).retry_after_s(9) == 3  # 3 batches x 1 s before any timing
    policy = after_batch(batch_s=2.5)
    assert policy.retry_after_s(9) == 5  # 2 batches of up to 8, 2.5 s each
    assert policy.retry_after_s(1) == 3


# --- the policy with simulated clients: a discrete-event model of the batcher's worker ---------


@dataclasses.dataclass
class Simulation:
    """Closed-loop clients (each sends its next request `think_s` after its image arrives) and one model
    whose batch of n takes batch_time(n); the worker follows BatchPolicy as Batcher._work does."""

    policy: BatchPolicy
    batch_time: Callable[[int], float]
    think_s: float
    clock: float = 0.0
    sizes: list[int] = dataclasses.field(default_factory=list)
    waits: list[float] = dataclasses.field(default_factory=list)  # hold time spent per batch

    def run(self, starts: list[float], batches: int) -> None:
        arrivals = [(t, i) for i, t in enumerate(starts)]
        heapq.heapify(arrivals)
        queue: list[tuple[float, int]] = []
        while len(self.sizes) < batches:
            if not queue:  # idle model: wait for the next arrival
                t, client = heapq.heappop(arrivals)
                self.clock = t
                self.policy.arrived(t)
                queue.append((t, client))
            hold = self.policy.hold(self.clock, len(queue))
            started_hold = self.clock
            while hold and len(queue) < hold.target and arrivals and arrivals[0][0] <= hold.until:
                t, client = heapq.heappop(arrivals)
                self.clock = t
                self.policy.arrived(t)
                queue.append((t, client))
            if hold and len(queue) < hold.target:
                self.clock = max(self.clock, hold.until)
            self.waits.append(self.clock - started_hold)
            batch, queue = queue[: self.policy.max_batch_size], queue[self.policy.max_batch_size :]
            duration = self.batch_time(len(batch))
            self.clock += duration
            # Arrivals during the batch queue up for the next one.
            while arrivals and arrivals[0][0] <= self.clock:
                t, client = heapq.heappop(arrivals)
                self.policy.arrived(t)
                queue.append((t, client))
            self.policy.finished(self.clock, len(batch), duration)
            self.sizes.append(len(batch))
            for _, client in batch:
                heapq.heappush(arrivals, (self.clock + self.think_s, client))


def gpu_like(n: int) -> float:
    """A batch of two costs far less than two batches of one (SD 2.1 on one accelerator)."""
    return 1.7 + 0.3 * (n - 1)


def test_two_clients_out_of_phase_meet_in_one_batch_and_stay_there() -> None:
    sim = Simulation(BatchPolicy(max_batch_size=8, max_wait_s=0.5), gpu_like, think_s=0.06)
    sim.run(starts=[0.0, 0.9], batches=40)  # the second client half a batch behind the first
    assert sim.sizes[-30:] == [2] * 30, sim.sizes


def test_without_holding_two_clients_out_of_phase_never_meet() -> None:
    sim = Simulation(BatchPolicy(max_batch_size=8, max_wait_s=0), gpu_like, think_s=0.06)
    sim.run(starts=[0.0, 0.9], batches=40)
    assert set(sim.sizes) == {1}


def test_one_client_never_waits() -> None:
    sim = Simulation(BatchPolicy(max_batch_size=8, max_wait_s=0.5), gpu_like, think_s=0.06)
    sim.run(starts=[0.0], batches=30)
    assert set(sim.sizes) == {1} and max(sim.waits) == 0


def test_eight_clients_in_two_groups_merge_into_batches_of_eight() -> None:
    sim = Simulation(BatchPolicy(max_batch_size=8, max_wait_s=0.5), gpu_like, think_s=0.06)
    sim.run(starts=[i * 0.37 for i in range(8)], batches=40)
    assert sim.sizes[-20:] == [8] * 20, sim.sizes


# --- the Batcher itself, with the fake clock and a model the test controls ---------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep_until(self, until: float) -> None:
        while self.now < until:
            await asyncio.sleep(0.001)


@contextlib.asynccontextmanager
async def batcher_on(clock: FakeClock, model: Any, max_wait_s: float) -> AsyncIterator[Batcher]:
    """A Batcher of up to 8 images on the fake clock (its holds and timeouts too), with its model
    thread; closed afterwards."""
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    batcher = Batcher(
        model, ServerMetrics(), 8, max_wait_s=max_wait_s, max_queue=8, executor=executor, clock=clock,
        sleep_until=clock.sleep_until,
    )  # fmt: skip
    try:
        yield batcher
    finally:
        await batcher.close()
        executor.shutdown()


@pytest.fixture
def model() -> Any:
    """A run_batch that records the batches it gets and returns one image per request at once."""
    calls: list[list[str]] = []

    def run_batch(key: BatchKey, requests: list[ImageRequest]) -> list[str]:
        calls.append([r.prompt for r in requests])
        return [f"image of {r.prompt}" for r in requests]

    run_batch.calls = calls  # type: ignore[attr-defined]
    return run_batch


def test_batcher_holds_for_company_and_goes_when_it_comes(model: Any) -> None:
    clock = FakeClock()

    async def scenario() -> list[str]:
        async with batcher_on(clock, model, max_wait_s=30.0) as batcher:
            # History: a batch of two that took 100 s finished just now; its two clients are coming back.
            batcher.policy.finished(clock.now, 2, 100.0)
            batcher.start()
            key = BatchKey(2, 7.5)
            first = asyncio.create_task(batcher.submit(key, ImageRequest("a", "", 1), timeout_s=60))
            for _ in range(50):  # the worker runs and decides to hold: nothing reaches the model
                await asyncio.sleep(0)
            assert model.calls == []
            clock.now += 0.1
            second = asyncio.create_task(batcher.submit(key, ImageRequest("b", "", 2), timeout_s=60))
            return [await first, await second]

    assert asyncio.run(scenario()) == ["image of a", "image of b"]
    assert model.calls == [["a", "b"]]


def test_batcher_never_holds_on_an_idle_server(model: Any) -> None:
    clock = FakeClock()

    async def scenario() -> str:
        async with batcher_on(clock, model, max_wait_s=30.0) as batcher:
            batcher.policy.finished(clock.now - 600, 2, 2.0)  # the last batch finished ten minutes ago
            batcher.start()
            result: str = await batcher.submit(BatchKey(2, 7.5), ImageRequest("lone", "", 1), timeout_s=60)
            return result

    assert asyncio.run(scenario()) == "image of lone"
    assert model.calls == [["lone"]]


def test_a_hold_ends_when_the_batchers_clock_says(model: Any) -> None:
    """The hold is timed on the injected clock: real time passing ends nothing, the clock reaching the
    end of the hold does (with time.monotonic, the two are the same)."""
    clock = FakeClock()

    async def scenario() -> str:
        async with batcher_on(clock, model, max_wait_s=1.0) as batcher:
            # A batch of two that took 4 s finished just now: a hold lasts min(1 s, 25% of 4 s) = 1 s.
            batcher.policy.finished(clock.now, 2, 4.0)
            batcher.start()
            lone = asyncio.create_task(batcher.submit(BatchKey(2, 7.5), ImageRequest("a", "", 1), timeout_s=60))
            await asyncio.sleep(1.5)  # more than the hold in this machine's seconds: the clock has not moved
            assert model.calls == []
            clock.now += 1.0
            result: str = await lone
            return result

    assert asyncio.run(scenario()) == "image of a"
    assert model.calls == [["a"]]


def test_a_request_times_out_when_the_batchers_clock_says(model: Any) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        async with batcher_on(clock, model, max_wait_s=0.0) as batcher:
            # Not started: the request waits in the queue until its timeout.
            waiting = asyncio.create_task(batcher.submit(BatchKey(2, 7.5), ImageRequest("a", "", 1), timeout_s=5))
            await asyncio.sleep(0.2)  # this machine's time passing times nothing out
            assert not waiting.done() and batcher.queue_depth == 1
            clock.now += 5.0
            with pytest.raises(RequestTimedOut):
                await waiting
            assert batcher.queue_depth == 0  # its slot is given back

    asyncio.run(scenario())
