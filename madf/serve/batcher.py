"""Requests that arrive together share a forward pass: a bounded queue in front of one worker that takes what is
waiting (up to ``max_batch``, after at most ``wait_ms``) and runs it through the shared Inpainter in a thread, so
the event loop keeps accepting requests while the model runs. A full queue is refused at once (the caller answers
503), never left to pile up."""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from typing import Optional, Tuple

import numpy as np


class QueueFull(Exception):
    """More requests are waiting than the queue holds."""


class Slots:
    """How many requests may hold decoded images at once: what the batcher can take (its queue and one running
    batch). A request takes a slot before it decodes and gives it back when answered; with none free it is refused
    at once (503), so many large uploads at a time never hold more decoded arrays than the queue admits."""

    def __init__(self, capacity: int):
        self.capacity, self.taken, self.peak = capacity, 0, 0

    def take(self) -> bool:
        if self.taken >= self.capacity:
            return False
        self.taken += 1
        self.peak = max(self.peak, self.taken)
        return True

    def give_back(self) -> None:
        self.taken -= 1


class Batcher:
    def __init__(self, inpainter, queue_size: int = 16, max_batch: int = 4, wait_ms: float = 10.0):
        self.inpainter, self.max_batch, self.wait = inpainter, max_batch, wait_ms / 1000
        self.queue: "asyncio.Queue[Tuple[np.ndarray, np.ndarray, asyncio.Future]]" = asyncio.Queue(queue_size)
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="madf-model")
        self.task: Optional[asyncio.Task] = None
        self.batches_run, self.largest_batch = 0, 0   # for /info (a count and a maximum: constant memory)

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            if self.task.get_loop() is asyncio.get_running_loop():   # let it end here (no "destroyed pending")
                with contextlib.suppress(asyncio.CancelledError):
                    await self.task
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((rgb, hole, future))
        except asyncio.QueueFull:
            raise QueueFull(f"{self.queue.maxsize} requests are waiting already; retry shortly") from None
        return await future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.wait
            while len(batch) < self.max_batch:
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), max(0.0, deadline - loop.time())))
                except asyncio.TimeoutError:
                    break
            self.batches_run, self.largest_batch = self.batches_run + 1, max(self.largest_batch, len(batch))
            pending = [item for item in batch if not item[2].cancelled()]   # clients that left are not run
            results = await loop.run_in_executor(self.executor, self._run, pending)
            for (_, _, future), result in zip(pending, results):
                if future.cancelled():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _run(self, batch) -> list:
        """Results (or the exception for each request): a failing batch is retried one by one, so one bad
        request does not fail the others."""
        try:
            return list(self.inpainter.inpaint_many([(rgb, hole) for rgb, hole, _ in batch]))
        except Exception as exc:  # noqa: BLE001 - any failure goes to its request: an escaped one killed the worker
            if len(batch) == 1:
                return [exc]
            return [self._run([item])[0] for item in batch]
