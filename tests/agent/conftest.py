"""Fixtures for the agent's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from vigil.agent.checks import CheckContext, Checks


@pytest.fixture
def checks() -> Iterator[Checks]:
    ctx = CheckContext(hostname="x")
    yield Checks(ctx)
    if ctx.collector is not None:
        ctx.collector.stop()
