"""Hybrid: edge-and-cloud deployment of LLM inference.

The public API is small: the client, the batcher and the errors. The servers live in
``edge_agent``, ``cloud`` and ``hybrid.router``; the command line is ``hybrid``.
"""

__version__ = "0.1.0"
