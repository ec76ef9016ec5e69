"""Shared by the Ansible suites: hostchecks/ runs only when a target host is named."""
from __future__ import annotations

from pathlib import Path


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    """hostchecks/ is the testinfra suite: it runs only against a host named with --hosts."""
    if "hostchecks" in collection_path.parts and not config.getoption("hosts", default=None):
        return True
    return None
