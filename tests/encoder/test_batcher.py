import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from marsbench.encoder.core.batcher import DynamicBatcher
from marsbench.encoder.errors import ForwardFailed, Overloaded

pytestmark = pytest.mark.anyio


class Recorder:
    """run_batch that records batch sizes; row i is [item, item]."""

    def __init__(self, fail_on: int | None = None, gate: threading.Event | None = None) -> None:
        self.sizes: list[int] = []
        self.fail_on = fail_on
        self.gate = gate

    def __call__(self, batch: list[int]) -> np.ndarray:
        if self.gate is not None:
            self.gate.wait(5)
        self.sizes.append(len(batch))
        if self.fail_on is not None and self.fail_on in batch:
            raise RuntimeError("boom")
        return np.array([[x, x] for x in batch], dtype=np.float32)


@pytest.fixture
def executor():
    pool = ThreadPoolExecutor(1)
    yield pool
    pool.shutdown()


def make(recorder: Recorder, executor: ThreadPoolExecutor, **kw: float) -> DynamicBatcher[int]:
    opts = {"max_batch_size": 4, "max_wait_s": 0.05, "max_queued_items": 100, **kw}
    return DynamicBatcher("test", recorder, executor=executor, **opts)  # type: ignore[arg-type]


async def test_concurrent_requests_share_batches_and_keep_order(executor: ThreadPoolExecutor) -> None:
    recorder = Recorder()
    batcher = make(recorder, executor)
    results = await asyncio.gather(*(batcher.submit([i]) for i in range(4)))
    assert [r[:, 0].tolist() for r in results] == [[0], [1], [2], [3]]
    assert recorder.sizes == [4]  # four single-item requests closed one full batch
    await batcher.close()


async def test_large_request_is_split_across_batches(executor: ThreadPoolExecutor) -> None:
    recorder = Recorder()
    batcher = make(recorder, executor)
    rows = await batcher.submit(list(range(10)))
    assert rows[:, 0].tolist() == list(range(10))
    assert recorder.sizes == [4, 4, 2]
    await batcher.close()


async def test_partial_batch_closes_after_max_wait(executor: ThreadPoolExecutor) -> None:
    recorder = Recorder()
    batcher = make(recorder, executor, max_wait_s=0.01)
    rows = await asyncio.wait_for(batcher.submit([7]), 2)
    assert rows.tolist() == [[7, 7]] and recorder.sizes == [1]
    await batcher.close()


async def test_full_queue_raises_overloaded(executor: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    batcher = make(Recorder(gate=gate), executor, max_queued_items=6, max_wait_s=0)
    first = asyncio.ensure_future(batcher.submit([1, 2, 3, 4]))  # taken into a blocked batch
    await asyncio.sleep(0.05)
    queued = asyncio.ensure_future(batcher.submit([5, 6, 7, 8, 9, 10]))  # fills the queue
    await asyncio.sleep(0.01)
    with pytest.raises(Overloaded) as caught:
        await batcher.submit([11])
    assert caught.value.retry_after_s >= 1
    gate.set()
    assert (await first).shape == (4, 2) and (await queued).shape == (6, 2)
    await batcher.close()


async def test_failing_batch_fails_its_requests_but_not_the_batcher(executor: ThreadPoolExecutor) -> None:
    recorder = Recorder(fail_on=3)
    batcher = make(recorder, executor)
    # The forward's own exception becomes one that names the model (issue 17: a clear error).
    with pytest.raises(ForwardFailed, match="RuntimeError: boom"):
        await batcher.submit([1, 2, 3])
    assert (await batcher.submit([5])).tolist() == [[5, 5]]
    await batcher.close()


async def test_cancelled_request_releases_its_queue_room(executor: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    batcher = make(Recorder(gate=gate), executor, max_wait_s=0)
    blocker = asyncio.ensure_future(batcher.submit([0, 0, 0, 0]))
    await asyncio.sleep(0.05)
    waiting = asyncio.ensure_future(batcher.submit([1, 2, 3]))
    await asyncio.sleep(0.01)
    assert batcher.stats().queued_items == 3
    waiting.cancel()
    await asyncio.sleep(0.01)
    assert batcher.stats().queued_items == 0
    gate.set()
    await blocker
    await batcher.close()


async def test_per_request_batches_are_the_callers_groups(executor: ThreadPoolExecutor) -> None:
    """For batch-dependent models: never merged with other requests, never split at max size."""
    recorder = Recorder()
    batcher = make(recorder, executor, max_batch_size=2, per_request=True)
    results = await asyncio.gather(*(batcher.submit(items) for items in ([1, 2, 3], [4], [5, 6])))
    assert sorted(recorder.sizes) == [1, 2, 3]
    assert [r[:, 0].tolist() for r in results] == [[1, 2, 3], [4], [5, 6]]
    await batcher.close()


async def test_an_idle_device_takes_a_lone_request_without_waiting(executor: ThreadPoolExecutor) -> None:
    """With a shared activity record, the batcher collects only while a forward runs."""
    from marsbench.encoder.core.batcher import DeviceActivity

    recorder = Recorder()
    batcher = make(recorder, executor, max_wait_s=2.0, activity=DeviceActivity())
    started = asyncio.get_running_loop().time()
    await batcher.submit([1])
    assert asyncio.get_running_loop().time() - started < 1.0  # not the 2 s collection window
    await batcher.close()


async def test_items_arriving_during_a_forward_share_the_next_batch(executor: ThreadPoolExecutor) -> None:
    from marsbench.encoder.core.batcher import DeviceActivity

    gate = threading.Event()
    recorder = Recorder(gate=gate)
    batcher = make(recorder, executor, max_wait_s=0.05, activity=DeviceActivity())
    first = asyncio.ensure_future(batcher.submit([1]))
    await asyncio.sleep(0.05)  # the first forward is running (held by the gate)
    rest = [asyncio.ensure_future(batcher.submit([i])) for i in (2, 3, 4)]
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(first, *rest)
    assert recorder.sizes == [1, 3]
    await batcher.close()
