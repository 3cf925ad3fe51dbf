"""Shared test setup: a marker per tier, taken from the test's folder; the eventlet shim."""

from __future__ import annotations

from pathlib import Path

import pytest

from ryu_lag import eventlet_compat

# In-process tests import ryu.app.wsgi, which needs the shim with modern eventlet.
eventlet_compat.apply()

TESTS_DIR = Path(__file__).parent
TIERS = ("unit", "rest", "live", "integration")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier: tests/unit/... is ``unit``, and so on."""
    for item in items:
        try:
            tier = item.path.relative_to(TESTS_DIR).parts[0]
        except ValueError:
            continue
        if tier in TIERS:
            item.add_marker(tier)
