"""What a replica's engine tells the router about its load."""

from __future__ import annotations

from dataclasses import dataclass, field

from hybrid.engine.pace import Pace
from hybrid.v1 import inference_pb2 as pb


@dataclass
class LoadSnapshot:
    """An engine's load at one moment; ``to_proto`` makes it the load report its replica answers with."""

    queue_depth: int
    active: int
    capacity: int
    max_queue: int
    tokens_per_second: float
    mean_request_ms: float
    draining: bool
    recent_ttft_p90_ms: float = 0.0
    pace: Pace = field(default_factory=Pace)

    def to_proto(self, replica_id: str, model: str, precision: str) -> pb.LoadReport:
        return pb.LoadReport(
            replica_id=replica_id,
            model=model,
            precision=precision,
            queue_depth=self.queue_depth,
            active=self.active,
            capacity=self.capacity,
            max_queue=self.max_queue,
            tokens_per_second=self.tokens_per_second,
            mean_request_ms=self.mean_request_ms,
            draining=self.draining,
            recent_ttft_p90_ms=self.recent_ttft_p90_ms,
            token_ms_base=self.pace.base_ms,
            token_ms_per_row=self.pace.per_row_ms,
        )
