"""The router's OpenAI-compatible HTTP front: existing OpenAI clients work against the router unchanged.

    POST /v1/chat/completions   POST /v1/completions   GET /v1/models

A thin adapter over ``RouterDataPlane``, like the gRPC servicer, in the modules below:

- ``schemas``: the request bodies; every field is honoured or refused (``unsupported``), never ignored.
- ``convert``: a body and its headers as a ``pb.GenerateRequest`` (``hybrid.client.build_request``),
  validated by ``request_from_proto``. Hybrid's own inputs come as headers (``x-hybrid-priority``,
  ``x-hybrid-affinity-key``, ``x-hybrid-timeout-ms``).
- ``completions``: one request routed by the data plane and answered, whole or as Server-Sent Events.
- ``rendering``: chunks as OpenAI objects; Hybrid's outputs in a ``hybrid`` field (where the answer
  was served, timing).
- ``errors``: OpenAI-style ``{"error": {...}}`` bodies, their HTTP status mapped from the gRPC code.
- ``limits``: bounds on body and head size and on the time a client takes to send them.
- ``app``: the FastAPI routes and ``OpenAIFront``, the uvicorn server.
"""

from hybrid.router.openai.app import OpenAIFront

__all__ = ["OpenAIFront"]
