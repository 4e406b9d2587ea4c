"""Servicer functions for Ray Serve's gRPC proxy (its ``grpc_options.grpc_servicer_functions``).

The proxy imports these by dotted path, so this module stays light: no Ray, no torch.
"""

from __future__ import annotations

from hybrid.serving.grpc_shell import inference_handler


def add_inference_servicer(servicer, server) -> None:
    """hybrid.v1.Inference with Generate's request left as bytes.

    The proxy keeps a method's request deserializer; without one it hands the replica the raw
    bytes, and the replica's parse answers a malformed body with INVALID_ARGUMENT and what to
    change, as the edge agent does, instead of the proxy's UNKNOWN "wire format was corrupt".
    """
    server.add_generic_rpc_handlers((inference_handler(servicer.Generate, servicer.GetLoad),))
