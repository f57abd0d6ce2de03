"""Run one function in several forked processes at once: the cross-process checks of atomic operations."""

from __future__ import annotations

import multiprocessing
import queue
import traceback
from collections.abc import Callable
from typing import Any


def race_in_processes(worker: Callable[[int], Any], count: int, timeout: float = 120) -> list[Any]:
    """``worker(i)`` for ``i`` in ``range(count)``, each in its own forked process; their results by ``i``.

    The processes wait at a barrier and start together, so their calls overlap.
    A worker builds what it uses (a ``Cache``, a tier) itself, after the fork.
    Its result must be picklable; an exception in a worker is raised here as an
    ``AssertionError`` carrying the worker's traceback.
    """
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(count)
    results: Any = context.Queue()

    def run(index: int) -> None:
        try:
            barrier.wait(timeout)
            results.put((index, True, worker(index)))
        except BaseException:
            results.put((index, False, traceback.format_exc()))

    processes = [context.Process(target=run, args=(i,), daemon=True) for i in range(count)]
    for process in processes:
        process.start()
    answers: dict[int, Any] = {}
    try:
        for _ in range(count):
            index, ok, answer = results.get(timeout=timeout)
            if not ok:
                raise AssertionError(f"worker {index} failed:\n{answer}")
            answers[index] = answer
    except queue.Empty:
        raise AssertionError(f"only {len(answers)} of {count} workers answered within {timeout}s") from None
    finally:
        for process in processes:
            process.join(timeout)
            if process.is_alive():
                process.kill()
    return [answers[i] for i in range(count)]
