"""Shared pytest configuration: a derandomised hypothesis profile for CI, the gpu marker's skip."""
from __future__ import annotations

import os

import pytest

try:
    from hypothesis import settings

    settings.register_profile("ci", derandomize=True, max_examples=30, deadline=None)
    settings.register_profile("dev", max_examples=30, deadline=None)
    settings.load_profile("ci" if os.environ.get("CI") else "dev")
except ImportError:  # hypothesis is in the test extra
    pass


def _gpu_available() -> bool:
    try:
        import jax

        return any(dev.platform == "gpu" for dev in jax.devices())
    except Exception:  # no jax, or no backend
        return False


def pytest_collection_modifyitems(config, items):
    if any("gpu" in item.keywords for item in items) and not _gpu_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU visible to JAX")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
