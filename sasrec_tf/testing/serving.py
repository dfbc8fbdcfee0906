"""Many clients at once against a model server, for the serving tests' concurrency cases."""

from __future__ import annotations

import threading
from typing import Any, Callable, ContextManager, Sequence

__all__ = ["recommend_concurrently"]


def recommend_concurrently(open_client: Callable[[], ContextManager[Any]], requests: Sequence[Sequence[Sequence[str]]],
                           threads: int, join_seconds: float = 120.0) -> dict[int, Any]:
    """Send ``requests`` from ``threads`` threads at once, each through its own client.

    Thread ``t`` sends requests ``t, t + threads, ...`` one after the other with ``client.recommend``.

    Args:
        open_client: Opens one client (a context manager with ``recommend(histories)``), called once per thread.
        requests: Each a list of histories (one ``recommend`` call).
        threads: Threads (and clients).
        join_seconds: How long to wait for each thread.

    Returns:
        The answers by request index (a request whose thread failed or hung has none).

    Raises:
        BaseException: The first error a thread met.
    """
    answers: dict[int, Any] = {}
    failures: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            with open_client() as own:
                for index in range(offset, len(requests), threads):
                    answers[index] = own.recommend(requests[index])
        except BaseException as err:  # noqa: BLE001 - raised below, in the caller's thread
            failures.append(err)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=join_seconds)
    if failures:
        raise failures[0]
    return answers
