"""Dynamic micro-batching: concurrent requests gathered into one forward pass, on one worker thread.

Queued requests are gathered into one micro-batch (up to `max_batch_size` inputs, waiting at most
`max_wait_ms` for more), which the predictor runs as a few length-sorted forward passes. The model runs in
a worker thread, off the event loop. The queue is bounded: when it is full the server answers 503 at once
instead of growing without limit.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass


class QueueFull(Exception):
    pass


@dataclass
class _Job:
    items: list
    future: asyncio.Future


class MicroBatcher:
    """Gathers queued requests into batches and runs them on one worker thread."""

    def __init__(self, predict_fn, max_batch_size: int, max_wait_ms: float, max_queue: int, on_batch=None):
        self.predict_fn = predict_fn  # a list of inputs -> a list of results, one per input
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=max_queue)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tunelab-model")
        self.on_batch = on_batch
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, items: list) -> list:
        future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait(_Job(list(items), future))
        except asyncio.QueueFull:
            raise QueueFull from None
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._gather(loop)
            jobs = [j for j in jobs if not j.future.cancelled()]
            if jobs:
                await self._run_batch(loop, jobs)

    async def _gather(self, loop) -> list[_Job]:
        """The next job, and more until the batch is full or the first one has waited max_wait."""
        jobs = [await self.queue.get()]
        rows = len(jobs[0].items)
        deadline = loop.time() + self.max_wait
        while rows < self.max_batch_size:
            try:
                job = self.queue.get_nowait() if loop.time() >= deadline else await asyncio.wait_for(
                    self.queue.get(), deadline - loop.time())
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
            jobs.append(job)
            rows += len(job.items)
        return jobs

    async def _run_batch(self, loop, jobs: list[_Job]) -> None:
        items = [item for job in jobs for item in job.items]
        if self.on_batch:
            self.on_batch(len(items))
        try:
            results = await loop.run_in_executor(self.executor, self.predict_fn, items)
        except Exception as exc:  # noqa: BLE001 - handed to every waiting request
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        start = 0
        for job in jobs:
            if not job.future.done():
                job.future.set_result(results[start:start + len(job.items)])
            start += len(job.items)
