"""ingest's reader thread: order kept, errors raised in the job, an early exit stops it."""
import threading

import pytest

from jobs.ingest import ahead


def test_items_arrive_in_order():
    with ahead(iter(range(50))) as items:
        assert list(items) == list(range(50))


def test_an_error_on_the_reader_thread_is_raised_in_the_consumer():
    def items():
        yield 1
        raise ValueError("bad chunk")

    with pytest.raises(ValueError, match="bad chunk"):
        with ahead(items()) as chunks:
            assert next(chunks) == 1
            next(chunks)


def test_leaving_early_stops_the_reader_thread_and_closes_the_source():
    closed = threading.Event()

    def items():
        try:
            for i in range(1_000_000):
                yield i
        finally:
            closed.set()

    with pytest.raises(RuntimeError):
        with ahead(items()) as chunks:
            next(chunks)
            raise RuntimeError("the database refused a row")
    assert not any(t.name == "ingest-reader" for t in threading.enumerate())
    assert closed.wait(5)
