"""Hybrid: edge-and-cloud deployment of LLM inference.

The public API is small: the clients, the batcher and the errors. The servers live in
``edge_agent``, ``cloud`` and the router; the command line is ``hybrid``.
"""

__version__ = "0.1.0"

from hybrid.client import AsyncHybridClient, Completion, HybridClient, RequestFailed  # noqa: E402
from hybrid.engine.batching import DynamicBatcher  # noqa: E402
from hybrid.errors import HybridError, InvalidRequestError, OverloadedError  # noqa: E402
from hybrid.protocol import Priority  # noqa: E402

__all__ = [
    "AsyncHybridClient",
    "Completion",
    "DynamicBatcher",
    "HybridClient",
    "HybridError",
    "InvalidRequestError",
    "OverloadedError",
    "Priority",
    "RequestFailed",
    "__version__",
]
