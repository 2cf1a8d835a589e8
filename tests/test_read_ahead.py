"""The import's read-ahead thread: same items in order, errors raised to the caller, clean stop."""

import threading

import pytest

from apps.cases.importing import read_ahead


def test_items_come_in_order():
    assert list(read_ahead(iter(range(100)), depth=2)) == list(range(100))


def test_an_error_in_the_reader_is_raised_to_the_caller():
    def items():
        yield 1
        raise ValueError("bad block")

    reader = read_ahead(items(), depth=2)
    assert next(reader) == 1
    with pytest.raises(ValueError, match="bad block"):
        next(reader)


def test_a_caller_that_stops_early_stops_the_thread():
    produced = []

    def items():
        for i in range(10_000):
            produced.append(i)
            yield i

    reader = read_ahead(items(), depth=2)
    assert next(reader) == 0
    reader.close()  # as when storing a chunk fails
    assert not any(t.name == "case-file-reader" for t in threading.enumerate())
    assert len(produced) < 10


def test_a_caller_failing_while_the_reader_is_blocked_does_not_hang():
    finished = threading.Event()

    def run() -> None:
        # The reader fills both slots, then waits to hand over the end of the items.
        reader = read_ahead(iter(range(3)), depth=2)
        next(reader)
        threading.Event().wait(0.3)  # the reader is now blocked on a full queue
        reader.close()
        finished.set()

    caller = threading.Thread(target=run)
    caller.start()
    caller.join(timeout=5)
    assert finished.is_set(), "closing the read-ahead hung"
