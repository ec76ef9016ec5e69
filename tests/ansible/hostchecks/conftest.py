"""Options of the testinfra host suite (defaults: the triton role's defaults and the repo's files)."""
from __future__ import annotations


def pytest_addoption(parser):
    group = parser.getgroup("tritonops host checks")
    group.addoption("--triton-root", default="/opt/tritonops", help="the triton role's triton_root")
    group.addoption("--compose-project", default="tritonops", help="the triton role's triton_compose_project")
    group.addoption("--model-repository", default=None, help="what was deployed (default: the repo's model_repository)")
