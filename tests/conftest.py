"""Fixtures for every test directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crossroute import correlation, privacy


@pytest.fixture(autouse=True)
def _no_masking_key_left_configured() -> Iterator[None]:
    """``privacy.configure`` is process-wide and a handler a test loads calls it, with a key loader that
    reads the test's emulated account: each test starts, and ends, with none configured."""
    privacy.configure(None)
    yield
    privacy.configure(None)


@pytest.fixture(autouse=True)
def _no_correlation_id_left_bound() -> Iterator[None]:
    """Dispatch binds a send's request id as the correlation id (``correlation.bind``): inside the
    consumer's scope in a function; here, inside this test's."""
    with correlation.scope(None):
        yield
