"""Stopping a training run's work in the threads that do it, at their next step of Python code.

A scikit-learn fit cannot be asked to stop, so a cancelled run's threads are interrupted: each
thread that works for the run enters `Cancellation.working()`, and `cancel()` raises
`RunCancelled` in every thread inside it (CPython's PyThreadState_SetAsyncExc). The exception
lands at the thread's next step of Python code: in scikit-learn the next boosting iteration,
tree or solver step, so within about a second; inside one long native call (a C loop), when
that call returns. No library offers this for threads; a process per fit would cost a fork and
a copy of the data on every run.

Leaving `working()` disarms the thread: once out, nothing is raised in it, even when the
cancel came at that very moment (a pending exception is cleared under the same lock).
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

T = TypeVar("T")


class RunCancelled(BaseException):
    """Raised in a thread working for a run once a data scientist cancelled the run.

    A BaseException, as KeyboardInterrupt is: the many `except Exception` on the way (a failed
    side prediction that must not fail the run, say) must let it through to the run's end."""


def _raise_in(thread_id: int, exception: type[BaseException] | None) -> None:
    # None clears an exception set earlier and not yet raised.
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exception) if exception else None
    )


class Cancellation:
    """The threads doing one run's work, and the way to stop them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: set[int] = set()
        self.cancelled = False

    @contextmanager
    def working(self) -> Iterator[None]:
        """The calling thread works for the run until the block ends."""
        ident = threading.get_ident()
        with self._lock:
            if self.cancelled:
                raise RunCancelled
            self._threads.add(ident)
        try:
            yield
        finally:
            self._leave(ident)

    def _leave(self, ident: int) -> None:
        while True:
            try:
                with self._lock:
                    self._threads.discard(ident)
                    if self.cancelled:
                        _raise_in(ident, None)
                return
            except RunCancelled:
                continue  # it landed here, at the last moment: leave again, disarmed

    def wrap(self, work: Callable[..., T]) -> Callable[..., T]:
        """`work`, run as working for the run (for a side thread's pool)."""

        @wraps(work)
        def working_on(*args: Any, **kwargs: Any) -> T:
            with self.working():
                return work(*args, **kwargs)

        return working_on

    def cancel(self) -> None:
        with self._lock:
            if self.cancelled:
                return
            self.cancelled = True
            for ident in self._threads:
                _raise_in(ident, RunCancelled)


def working_in(cancellation: Cancellation | None, work: Callable[..., T]) -> Callable[..., T]:
    """`work` wrapped for `cancellation`, or as it is when there is none."""
    return cancellation.wrap(work) if cancellation is not None else work
