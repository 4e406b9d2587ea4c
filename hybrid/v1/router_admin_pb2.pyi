from hybrid.v1 import inference_pb2 as _inference_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Replica(_message.Message):
    __slots__ = ("replica_id", "address", "tier", "model", "precision", "region", "zone", "capacity", "cost_per_hour", "outstanding", "queue_depth", "rtt_ms", "ejected")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    COST_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    OUTSTANDING_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    EJECTED_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    address: str
    tier: _inference_pb2.Tier
    model: str
    precision: str
    region: str
    zone: str
    capacity: int
    cost_per_hour: float
    outstanding: int
    queue_depth: int
    rtt_ms: float
    ejected: bool
    def __init__(self, replica_id: _Optional[str] = ..., address: _Optional[str] = ..., tier: _Optional[_Union[_inference_pb2.Tier, str]] = ..., model: _Optional[str] = ..., precision: _Optional[str] = ..., region: _Optional[str] = ..., zone: _Optional[str] = ..., capacity: _Optional[int] = ..., cost_per_hour: _Optional[float] = ..., outstanding: _Optional[int] = ..., queue_depth: _Optional[int] = ..., rtt_ms: _Optional[float] = ..., ejected: _Optional[bool] = ...) -> None: ...

class ListReplicasRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListReplicasResponse(_message.Message):
    __slots__ = ("replicas",)
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    replicas: _containers.RepeatedCompositeFieldContainer[Replica]
    def __init__(self, replicas: _Optional[_Iterable[_Union[Replica, _Mapping]]] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("chosen", "request_class", "tier_order", "reasons")
    CHOSEN_FIELD_NUMBER: _ClassVar[int]
    REQUEST_CLASS_FIELD_NUMBER: _ClassVar[int]
    TIER_ORDER_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    chosen: Replica
    request_class: str
    tier_order: _containers.RepeatedScalarFieldContainer[_inference_pb2.Tier]
    reasons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, chosen: _Optional[_Union[Replica, _Mapping]] = ..., request_class: _Optional[str] = ..., tier_order: _Optional[_Iterable[_Union[_inference_pb2.Tier, str]]] = ..., reasons: _Optional[_Iterable[str]] = ...) -> None: ...
