"""Shared pytest configuration: markers and the rule that in CI a skipped root/etcd test fails."""

from __future__ import annotations

import os
import shutil

import pytest


def _is_root() -> bool:
    return os.geteuid() == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    strict = os.environ.get("CI") == "true"
    for item in items:
        if item.get_closest_marker("root") and not _is_root():
            if strict:
                raise pytest.UsageError(f"{item.nodeid} needs root, and CI must run it")
            item.add_marker(pytest.mark.skip(reason="needs root"))
        if item.get_closest_marker("etcd") and shutil.which("etcd") is None:
            if strict:
                raise pytest.UsageError(f"{item.nodeid} needs etcd, and CI must run it")
            item.add_marker(pytest.mark.skip(reason="needs the etcd binary"))
