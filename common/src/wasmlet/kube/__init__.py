"""A small asyncio Kubernetes API client on aiohttp, shared by the operator and the agent.

Why not `kubernetes_asyncio`: importing it costs ~74 MB of resident memory (docs/decisions.md), more
than the whole idle agent may use on an edge node; the agent needs a dozen verbs on a handful of
resources. This package is the only place that speaks HTTP to the API server; callers see
`ApiError` subclasses (errors.py), never aiohttp exceptions.
"""

from wasmlet.kube.client import KubeClient
from wasmlet.kube.config import ClusterConfig, load_config
from wasmlet.kube.errors import (
    AlreadyExists,
    ApiError,
    ApiUnavailable,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
)
from wasmlet.kube.resources import Resource

__all__ = [
    "AlreadyExists",
    "ApiError",
    "ApiUnavailable",
    "ClusterConfig",
    "Conflict",
    "Forbidden",
    "Gone",
    "Invalid",
    "KubeClient",
    "NotFound",
    "Resource",
    "load_config",
]
