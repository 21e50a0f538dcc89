"""Run callables at the same moment in threads, each with its own database connection."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connection


@dataclass
class Outcome:
    value: Any = None
    error: BaseException | None = None


def run_concurrently(*calls: Callable[[], Any], timeout: float = 30) -> list[Outcome]:
    """Starts every call behind a barrier so that they race; returns each one's value or exception."""
    barrier = threading.Barrier(len(calls))
    outcomes = [Outcome() for _ in calls]

    def runner(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=timeout)
            outcomes[index].value = call()
        except BaseException as exc:  # handed to the test
            outcomes[index].error = exc
        finally:
            connection.close()  # a thread's connection is its own: close it, or the test database stays busy

    threads = [threading.Thread(target=runner, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a concurrent call hung (a deadlock?)"
    return outcomes
