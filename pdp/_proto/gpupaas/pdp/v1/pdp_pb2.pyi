import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    ALLOW: _ClassVar[Outcome]
    DENY: _ClassVar[Outcome]
    NEEDS_APPROVAL: _ClassVar[Outcome]
OUTCOME_UNSPECIFIED: Outcome
ALLOW: Outcome
DENY: Outcome
NEEDS_APPROVAL: Outcome

class DecideRequest(_message.Message):
    __slots__ = ("intent",)
    INTENT_FIELD_NUMBER: _ClassVar[int]
    intent: Intent
    def __init__(self, intent: _Optional[_Union[Intent, _Mapping]] = ...) -> None: ...

class DecideResponse(_message.Message):
    __slots__ = ("decision",)
    DECISION_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    def __init__(self, decision: _Optional[_Union[Decision, _Mapping]] = ...) -> None: ...

class DecideBatchRequest(_message.Message):
    __slots__ = ("intents",)
    INTENTS_FIELD_NUMBER: _ClassVar[int]
    intents: _containers.RepeatedCompositeFieldContainer[Intent]
    def __init__(self, intents: _Optional[_Iterable[_Union[Intent, _Mapping]]] = ...) -> None: ...

class DecideBatchResponse(_message.Message):
    __slots__ = ("decisions",)
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    def __init__(self, decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ...) -> None: ...

class Intent(_message.Message):
    __slots__ = ("tenant", "actor", "usage", "create_tenant", "deploy_model", "scale", "change_batch_size", "request_gpu_sharing", "update_quotas", "offboard_tenant", "admit_workload", "place_workload", "preempt", "change_sla", "change_capacity", "reclaim", "degrade", "sla_breach", "remediate_drift")
    class UsageEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TENANT_FIELD_NUMBER: _ClassVar[int]
    DEPLOY_MODEL_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    CHANGE_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_GPU_SHARING_FIELD_NUMBER: _ClassVar[int]
    UPDATE_QUOTAS_FIELD_NUMBER: _ClassVar[int]
    OFFBOARD_TENANT_FIELD_NUMBER: _ClassVar[int]
    ADMIT_WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    PLACE_WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    PREEMPT_FIELD_NUMBER: _ClassVar[int]
    CHANGE_SLA_FIELD_NUMBER: _ClassVar[int]
    CHANGE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    RECLAIM_FIELD_NUMBER: _ClassVar[int]
    DEGRADE_FIELD_NUMBER: _ClassVar[int]
    SLA_BREACH_FIELD_NUMBER: _ClassVar[int]
    REMEDIATE_DRIFT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    actor: str
    usage: _containers.ScalarMap[str, int]
    create_tenant: CreateTenant
    deploy_model: DeployModel
    scale: Scale
    change_batch_size: ChangeBatchSize
    request_gpu_sharing: RequestGpuSharing
    update_quotas: UpdateQuotas
    offboard_tenant: OffboardTenant
    admit_workload: Workload
    place_workload: Placement
    preempt: Preempt
    change_sla: ChangeSla
    change_capacity: ChangeCapacity
    reclaim: Reclaim
    degrade: Degrade
    sla_breach: SlaBreach
    remediate_drift: RemediateDrift
    def __init__(self, tenant: _Optional[str] = ..., actor: _Optional[str] = ..., usage: _Optional[_Mapping[str, int]] = ..., create_tenant: _Optional[_Union[CreateTenant, _Mapping]] = ..., deploy_model: _Optional[_Union[DeployModel, _Mapping]] = ..., scale: _Optional[_Union[Scale, _Mapping]] = ..., change_batch_size: _Optional[_Union[ChangeBatchSize, _Mapping]] = ..., request_gpu_sharing: _Optional[_Union[RequestGpuSharing, _Mapping]] = ..., update_quotas: _Optional[_Union[UpdateQuotas, _Mapping]] = ..., offboard_tenant: _Optional[_Union[OffboardTenant, _Mapping]] = ..., admit_workload: _Optional[_Union[Workload, _Mapping]] = ..., place_workload: _Optional[_Union[Placement, _Mapping]] = ..., preempt: _Optional[_Union[Preempt, _Mapping]] = ..., change_sla: _Optional[_Union[ChangeSla, _Mapping]] = ..., change_capacity: _Optional[_Union[ChangeCapacity, _Mapping]] = ..., reclaim: _Optional[_Union[Reclaim, _Mapping]] = ..., degrade: _Optional[_Union[Degrade, _Mapping]] = ..., sla_breach: _Optional[_Union[SlaBreach, _Mapping]] = ..., remediate_drift: _Optional[_Union[RemediateDrift, _Mapping]] = ...) -> None: ...

class CreateTenant(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: _struct_pb2.Struct
    def __init__(self, policy: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class DeployModel(_message.Message):
    __slots__ = ("deployment", "gpu_class", "gpus_per_replica", "replicas", "sharing", "cluster", "batch_size", "runtime", "model", "min_replicas")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    GPU_CLASS_FIELD_NUMBER: _ClassVar[int]
    GPUS_PER_REPLICA_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    SHARING_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MIN_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    gpu_class: str
    gpus_per_replica: int
    replicas: int
    sharing: str
    cluster: str
    batch_size: int
    runtime: str
    model: str
    min_replicas: int
    def __init__(self, deployment: _Optional[str] = ..., gpu_class: _Optional[str] = ..., gpus_per_replica: _Optional[int] = ..., replicas: _Optional[int] = ..., sharing: _Optional[str] = ..., cluster: _Optional[str] = ..., batch_size: _Optional[int] = ..., runtime: _Optional[str] = ..., model: _Optional[str] = ..., min_replicas: _Optional[int] = ...) -> None: ...

class Scale(_message.Message):
    __slots__ = ("deployment", "gpu_class", "gpus_per_replica", "current_replicas", "target_replicas")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    GPU_CLASS_FIELD_NUMBER: _ClassVar[int]
    GPUS_PER_REPLICA_FIELD_NUMBER: _ClassVar[int]
    CURRENT_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    TARGET_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    gpu_class: str
    gpus_per_replica: int
    current_replicas: int
    target_replicas: int
    def __init__(self, deployment: _Optional[str] = ..., gpu_class: _Optional[str] = ..., gpus_per_replica: _Optional[int] = ..., current_replicas: _Optional[int] = ..., target_replicas: _Optional[int] = ...) -> None: ...

class ChangeBatchSize(_message.Message):
    __slots__ = ("deployment", "batch_size")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    batch_size: int
    def __init__(self, deployment: _Optional[str] = ..., batch_size: _Optional[int] = ...) -> None: ...

class RequestGpuSharing(_message.Message):
    __slots__ = ("mode", "gpu_class")
    MODE_FIELD_NUMBER: _ClassVar[int]
    GPU_CLASS_FIELD_NUMBER: _ClassVar[int]
    mode: str
    gpu_class: str
    def __init__(self, mode: _Optional[str] = ..., gpu_class: _Optional[str] = ...) -> None: ...

class UpdateQuotas(_message.Message):
    __slots__ = ("entitlements",)
    class EntitlementsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ENTITLEMENTS_FIELD_NUMBER: _ClassVar[int]
    entitlements: _containers.ScalarMap[str, int]
    def __init__(self, entitlements: _Optional[_Mapping[str, int]] = ...) -> None: ...

class OffboardTenant(_message.Message):
    __slots__ = ("active_workloads", "reason")
    ACTIVE_WORKLOADS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    active_workloads: int
    reason: str
    def __init__(self, active_workloads: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ChangeSla(_message.Message):
    __slots__ = ("tier", "isolation")
    TIER_FIELD_NUMBER: _ClassVar[int]
    ISOLATION_FIELD_NUMBER: _ClassVar[int]
    tier: str
    isolation: str
    def __init__(self, tier: _Optional[str] = ..., isolation: _Optional[str] = ...) -> None: ...

class RemediateDrift(_message.Message):
    __slots__ = ("namespace", "pod", "node", "cluster", "finding", "deployment", "replaceable", "approved")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    FINDING_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    REPLACEABLE_FIELD_NUMBER: _ClassVar[int]
    APPROVED_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    pod: str
    node: str
    cluster: str
    finding: str
    deployment: str
    replaceable: bool
    approved: bool
    def __init__(self, namespace: _Optional[str] = ..., pod: _Optional[str] = ..., node: _Optional[str] = ..., cluster: _Optional[str] = ..., finding: _Optional[str] = ..., deployment: _Optional[str] = ..., replaceable: _Optional[bool] = ..., approved: _Optional[bool] = ...) -> None: ...

class Reclaim(_message.Message):
    __slots__ = ("deployment", "gpu_class", "gpus_per_replica", "current_replicas", "idle_gpus", "min_replicas", "consent")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    GPU_CLASS_FIELD_NUMBER: _ClassVar[int]
    GPUS_PER_REPLICA_FIELD_NUMBER: _ClassVar[int]
    CURRENT_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    IDLE_GPUS_FIELD_NUMBER: _ClassVar[int]
    MIN_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    CONSENT_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    gpu_class: str
    gpus_per_replica: int
    current_replicas: int
    idle_gpus: int
    min_replicas: int
    consent: bool
    def __init__(self, deployment: _Optional[str] = ..., gpu_class: _Optional[str] = ..., gpus_per_replica: _Optional[int] = ..., current_replicas: _Optional[int] = ..., idle_gpus: _Optional[int] = ..., min_replicas: _Optional[int] = ..., consent: _Optional[bool] = ...) -> None: ...

class Degrade(_message.Message):
    __slots__ = ("cause", "gpu_class", "short_gpus", "cluster", "region", "for_tier", "deployments")
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    GPU_CLASS_FIELD_NUMBER: _ClassVar[int]
    SHORT_GPUS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    FOR_TIER_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    cause: str
    gpu_class: str
    short_gpus: int
    cluster: str
    region: str
    for_tier: str
    deployments: _containers.RepeatedCompositeFieldContainer[DegradeDeployment]
    def __init__(self, cause: _Optional[str] = ..., gpu_class: _Optional[str] = ..., short_gpus: _Optional[int] = ..., cluster: _Optional[str] = ..., region: _Optional[str] = ..., for_tier: _Optional[str] = ..., deployments: _Optional[_Iterable[_Union[DegradeDeployment, _Mapping]]] = ...) -> None: ...

class DegradeDeployment(_message.Message):
    __slots__ = ("tenant", "deployment", "gpus_per_replica", "replicas", "min_replicas", "cluster", "affected")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    GPUS_PER_REPLICA_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    MIN_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    AFFECTED_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    deployment: str
    gpus_per_replica: int
    replicas: int
    min_replicas: int
    cluster: str
    affected: bool
    def __init__(self, tenant: _Optional[str] = ..., deployment: _Optional[str] = ..., gpus_per_replica: _Optional[int] = ..., replicas: _Optional[int] = ..., min_replicas: _Optional[int] = ..., cluster: _Optional[str] = ..., affected: _Optional[bool] = ...) -> None: ...

class SlaBreach(_message.Message):
    __slots__ = ("deployment", "gpu_class", "objective", "severity", "burn_rate", "measured", "current_pools", "pool_load")
    class PoolLoadEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    GPU_CLASS_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    BURN_RATE_FIELD_NUMBER: _ClassVar[int]
    MEASURED_FIELD_NUMBER: _ClassVar[int]
    CURRENT_POOLS_FIELD_NUMBER: _ClassVar[int]
    POOL_LOAD_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    gpu_class: str
    objective: str
    severity: str
    burn_rate: float
    measured: SlaMeasured
    current_pools: _containers.RepeatedScalarFieldContainer[str]
    pool_load: _containers.ScalarMap[str, float]
    def __init__(self, deployment: _Optional[str] = ..., gpu_class: _Optional[str] = ..., objective: _Optional[str] = ..., severity: _Optional[str] = ..., burn_rate: _Optional[float] = ..., measured: _Optional[_Union[SlaMeasured, _Mapping]] = ..., current_pools: _Optional[_Iterable[str]] = ..., pool_load: _Optional[_Mapping[str, float]] = ...) -> None: ...

class SlaMeasured(_message.Message):
    __slots__ = ("p99_ms", "availability")
    P99_MS_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    p99_ms: float
    availability: float
    def __init__(self, p99_ms: _Optional[float] = ..., availability: _Optional[float] = ...) -> None: ...

class ChangeCapacity(_message.Message):
    __slots__ = ("changes",)
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[CapacityChange]
    def __init__(self, changes: _Optional[_Iterable[_Union[CapacityChange, _Mapping]]] = ...) -> None: ...

class CapacityChange(_message.Message):
    __slots__ = ("address", "action", "before", "after")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    address: str
    action: str
    before: PoolState
    after: PoolState
    def __init__(self, address: _Optional[str] = ..., action: _Optional[str] = ..., before: _Optional[_Union[PoolState, _Mapping]] = ..., after: _Optional[_Union[PoolState, _Mapping]] = ...) -> None: ...

class PoolState(_message.Message):
    __slots__ = ("pool", "cluster", "region", "gpu_class", "nodes", "gpus_per_node", "dedicated_tenant")
    POOL_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    GPU_CLASS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    GPUS_PER_NODE_FIELD_NUMBER: _ClassVar[int]
    DEDICATED_TENANT_FIELD_NUMBER: _ClassVar[int]
    pool: str
    cluster: str
    region: str
    gpu_class: str
    nodes: int
    gpus_per_node: int
    dedicated_tenant: str
    def __init__(self, pool: _Optional[str] = ..., cluster: _Optional[str] = ..., region: _Optional[str] = ..., gpu_class: _Optional[str] = ..., nodes: _Optional[int] = ..., gpus_per_node: _Optional[int] = ..., dedicated_tenant: _Optional[str] = ...) -> None: ...

class SelectorRequirement(_message.Message):
    __slots__ = ("key", "operator", "values")
    KEY_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    key: str
    operator: str
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key: _Optional[str] = ..., operator: _Optional[str] = ..., values: _Optional[_Iterable[str]] = ...) -> None: ...

class NodeSelectorTerm(_message.Message):
    __slots__ = ("requirements",)
    REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    requirements: _containers.RepeatedCompositeFieldContainer[SelectorRequirement]
    def __init__(self, requirements: _Optional[_Iterable[_Union[SelectorRequirement, _Mapping]]] = ...) -> None: ...

class Toleration(_message.Message):
    __slots__ = ("key", "operator", "value", "effect")
    KEY_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    key: str
    operator: str
    value: str
    effect: str
    def __init__(self, key: _Optional[str] = ..., operator: _Optional[str] = ..., value: _Optional[str] = ..., effect: _Optional[str] = ...) -> None: ...

class Workload(_message.Message):
    __slots__ = ("namespace", "name", "kind", "resources", "node_selector", "node_affinity", "tolerations", "priority_class_name", "node_name", "resource_claims")
    class ResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class NodeSelectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    NODE_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    NODE_AFFINITY_FIELD_NUMBER: _ClassVar[int]
    TOLERATIONS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_CLAIMS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    kind: str
    resources: _containers.ScalarMap[str, int]
    node_selector: _containers.ScalarMap[str, str]
    node_affinity: _containers.RepeatedCompositeFieldContainer[NodeSelectorTerm]
    tolerations: _containers.RepeatedCompositeFieldContainer[Toleration]
    priority_class_name: str
    node_name: str
    resource_claims: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[str] = ..., resources: _Optional[_Mapping[str, int]] = ..., node_selector: _Optional[_Mapping[str, str]] = ..., node_affinity: _Optional[_Iterable[_Union[NodeSelectorTerm, _Mapping]]] = ..., tolerations: _Optional[_Iterable[_Union[Toleration, _Mapping]]] = ..., priority_class_name: _Optional[str] = ..., node_name: _Optional[str] = ..., resource_claims: _Optional[_Iterable[str]] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("name", "labels", "tenants", "namespaces")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    tenants: _containers.RepeatedScalarFieldContainer[str]
    namespaces: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., tenants: _Optional[_Iterable[str]] = ..., namespaces: _Optional[_Iterable[str]] = ...) -> None: ...

class Held(_message.Message):
    __slots__ = ("resources", "on")
    class ResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    ON_FIELD_NUMBER: _ClassVar[int]
    resources: _containers.ScalarMap[str, int]
    on: _containers.RepeatedCompositeFieldContainer[NodeLabels]
    def __init__(self, resources: _Optional[_Mapping[str, int]] = ..., on: _Optional[_Iterable[_Union[NodeLabels, _Mapping]]] = ...) -> None: ...

class NodeLabels(_message.Message):
    __slots__ = ("labels",)
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LABELS_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.ScalarMap[str, str]
    def __init__(self, labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Placement(_message.Message):
    __slots__ = ("workload", "nodes", "held")
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    workload: Workload
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    held: _containers.RepeatedCompositeFieldContainer[Held]
    def __init__(self, workload: _Optional[_Union[Workload, _Mapping]] = ..., nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., held: _Optional[_Iterable[_Union[Held, _Mapping]]] = ...) -> None: ...

class Victim(_message.Message):
    __slots__ = ("tenant", "workload", "priority_class_name")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    workload: str
    priority_class_name: str
    def __init__(self, tenant: _Optional[str] = ..., workload: _Optional[str] = ..., priority_class_name: _Optional[str] = ...) -> None: ...

class Preempt(_message.Message):
    __slots__ = ("priority_class_name", "victims")
    PRIORITY_CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    VICTIMS_FIELD_NUMBER: _ClassVar[int]
    priority_class_name: str
    victims: _containers.RepeatedCompositeFieldContainer[Victim]
    def __init__(self, priority_class_name: _Optional[str] = ..., victims: _Optional[_Iterable[_Union[Victim, _Mapping]]] = ...) -> None: ...

class Reason(_message.Message):
    __slots__ = ("code", "message", "policy")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    policy: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., policy: _Optional[str] = ...) -> None: ...

class Isolation(_message.Message):
    __slots__ = ("mode", "gpu_sharing", "sharing_strategies", "dedicated_pools")
    MODE_FIELD_NUMBER: _ClassVar[int]
    GPU_SHARING_FIELD_NUMBER: _ClassVar[int]
    SHARING_STRATEGIES_FIELD_NUMBER: _ClassVar[int]
    DEDICATED_POOLS_FIELD_NUMBER: _ClassVar[int]
    mode: str
    gpu_sharing: bool
    sharing_strategies: _containers.RepeatedScalarFieldContainer[str]
    dedicated_pools: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, mode: _Optional[str] = ..., gpu_sharing: _Optional[bool] = ..., sharing_strategies: _Optional[_Iterable[str]] = ..., dedicated_pools: _Optional[_Iterable[str]] = ...) -> None: ...

class ReclaimPlan(_message.Message):
    __slots__ = ("action", "grace_seconds", "target_replicas", "release_gpus", "protected_replicas")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TARGET_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    RELEASE_GPUS_FIELD_NUMBER: _ClassVar[int]
    PROTECTED_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    action: str
    grace_seconds: int
    target_replicas: int
    release_gpus: int
    protected_replicas: int
    def __init__(self, action: _Optional[str] = ..., grace_seconds: _Optional[int] = ..., target_replicas: _Optional[int] = ..., release_gpus: _Optional[int] = ..., protected_replicas: _Optional[int] = ...) -> None: ...

class DegradationPlan(_message.Message):
    __slots__ = ("gpu_class", "short_gpus", "freed_gpus", "sufficient", "steps", "kept", "replace_order")
    GPU_CLASS_FIELD_NUMBER: _ClassVar[int]
    SHORT_GPUS_FIELD_NUMBER: _ClassVar[int]
    FREED_GPUS_FIELD_NUMBER: _ClassVar[int]
    SUFFICIENT_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    REPLACE_ORDER_FIELD_NUMBER: _ClassVar[int]
    gpu_class: str
    short_gpus: int
    freed_gpus: int
    sufficient: bool
    steps: _containers.RepeatedCompositeFieldContainer[DegradationStep]
    kept: _containers.RepeatedCompositeFieldContainer[DegradationKept]
    replace_order: _containers.RepeatedCompositeFieldContainer[DegradationReplace]
    def __init__(self, gpu_class: _Optional[str] = ..., short_gpus: _Optional[int] = ..., freed_gpus: _Optional[int] = ..., sufficient: _Optional[bool] = ..., steps: _Optional[_Iterable[_Union[DegradationStep, _Mapping]]] = ..., kept: _Optional[_Iterable[_Union[DegradationKept, _Mapping]]] = ..., replace_order: _Optional[_Iterable[_Union[DegradationReplace, _Mapping]]] = ...) -> None: ...

class DegradationStep(_message.Message):
    __slots__ = ("order", "tenant", "deployment", "tier", "action", "from_replicas", "to_replicas", "release_gpus", "affected", "may_move_to")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    FROM_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    TO_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    RELEASE_GPUS_FIELD_NUMBER: _ClassVar[int]
    AFFECTED_FIELD_NUMBER: _ClassVar[int]
    MAY_MOVE_TO_FIELD_NUMBER: _ClassVar[int]
    order: int
    tenant: str
    deployment: str
    tier: str
    action: str
    from_replicas: int
    to_replicas: int
    release_gpus: int
    affected: bool
    may_move_to: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, order: _Optional[int] = ..., tenant: _Optional[str] = ..., deployment: _Optional[str] = ..., tier: _Optional[str] = ..., action: _Optional[str] = ..., from_replicas: _Optional[int] = ..., to_replicas: _Optional[int] = ..., release_gpus: _Optional[int] = ..., affected: _Optional[bool] = ..., may_move_to: _Optional[_Iterable[str]] = ...) -> None: ...

class DegradationKept(_message.Message):
    __slots__ = ("tenant", "deployment", "tier", "replicas", "why")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    WHY_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    deployment: str
    tier: str
    replicas: int
    why: str
    def __init__(self, tenant: _Optional[str] = ..., deployment: _Optional[str] = ..., tier: _Optional[str] = ..., replicas: _Optional[int] = ..., why: _Optional[str] = ...) -> None: ...

class DegradationReplace(_message.Message):
    __slots__ = ("tenant", "deployment", "tier", "may_move_to")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    MAY_MOVE_TO_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    deployment: str
    tier: str
    may_move_to: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenant: _Optional[str] = ..., deployment: _Optional[str] = ..., tier: _Optional[str] = ..., may_move_to: _Optional[_Iterable[str]] = ...) -> None: ...

class SlaEscalation(_message.Message):
    __slots__ = ("action", "target_pool", "from_pools", "credit_percent", "fallback_credit_percent")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_POOL_FIELD_NUMBER: _ClassVar[int]
    FROM_POOLS_FIELD_NUMBER: _ClassVar[int]
    CREDIT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_CREDIT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    action: str
    target_pool: str
    from_pools: _containers.RepeatedScalarFieldContainer[str]
    credit_percent: int
    fallback_credit_percent: int
    def __init__(self, action: _Optional[str] = ..., target_pool: _Optional[str] = ..., from_pools: _Optional[_Iterable[str]] = ..., credit_percent: _Optional[int] = ..., fallback_credit_percent: _Optional[int] = ...) -> None: ...

class DriftPlan(_message.Message):
    __slots__ = ("action", "grace_seconds")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    action: str
    grace_seconds: int
    def __init__(self, action: _Optional[str] = ..., grace_seconds: _Optional[int] = ...) -> None: ...

class NodeRejection(_message.Message):
    __slots__ = ("node", "reasons")
    NODE_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    node: str
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    def __init__(self, node: _Optional[str] = ..., reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ...) -> None: ...

class Constraints(_message.Message):
    __slots__ = ("eligible_clusters", "eligible_nodes", "rejected_nodes", "node_selector", "node_affinity", "tolerations", "priority_class_name", "isolation", "preemptible_victims", "empty_collections", "reclaim", "degradation", "sla_escalation", "drift", "node_label_keys")
    class NodeSelectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ELIGIBLE_CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_NODES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_NODES_FIELD_NUMBER: _ClassVar[int]
    NODE_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    NODE_AFFINITY_FIELD_NUMBER: _ClassVar[int]
    TOLERATIONS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    ISOLATION_FIELD_NUMBER: _ClassVar[int]
    PREEMPTIBLE_VICTIMS_FIELD_NUMBER: _ClassVar[int]
    EMPTY_COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    RECLAIM_FIELD_NUMBER: _ClassVar[int]
    DEGRADATION_FIELD_NUMBER: _ClassVar[int]
    SLA_ESCALATION_FIELD_NUMBER: _ClassVar[int]
    DRIFT_FIELD_NUMBER: _ClassVar[int]
    NODE_LABEL_KEYS_FIELD_NUMBER: _ClassVar[int]
    eligible_clusters: _containers.RepeatedScalarFieldContainer[str]
    eligible_nodes: _containers.RepeatedScalarFieldContainer[str]
    rejected_nodes: _containers.RepeatedCompositeFieldContainer[NodeRejection]
    node_selector: _containers.ScalarMap[str, str]
    node_affinity: _containers.RepeatedCompositeFieldContainer[SelectorRequirement]
    tolerations: _containers.RepeatedCompositeFieldContainer[Toleration]
    priority_class_name: str
    isolation: Isolation
    preemptible_victims: _containers.RepeatedCompositeFieldContainer[Victim]
    empty_collections: _containers.RepeatedScalarFieldContainer[str]
    reclaim: ReclaimPlan
    degradation: DegradationPlan
    sla_escalation: SlaEscalation
    drift: DriftPlan
    node_label_keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, eligible_clusters: _Optional[_Iterable[str]] = ..., eligible_nodes: _Optional[_Iterable[str]] = ..., rejected_nodes: _Optional[_Iterable[_Union[NodeRejection, _Mapping]]] = ..., node_selector: _Optional[_Mapping[str, str]] = ..., node_affinity: _Optional[_Iterable[_Union[SelectorRequirement, _Mapping]]] = ..., tolerations: _Optional[_Iterable[_Union[Toleration, _Mapping]]] = ..., priority_class_name: _Optional[str] = ..., isolation: _Optional[_Union[Isolation, _Mapping]] = ..., preemptible_victims: _Optional[_Iterable[_Union[Victim, _Mapping]]] = ..., empty_collections: _Optional[_Iterable[str]] = ..., reclaim: _Optional[_Union[ReclaimPlan, _Mapping]] = ..., degradation: _Optional[_Union[DegradationPlan, _Mapping]] = ..., sla_escalation: _Optional[_Union[SlaEscalation, _Mapping]] = ..., drift: _Optional[_Union[DriftPlan, _Mapping]] = ..., node_label_keys: _Optional[_Iterable[str]] = ...) -> None: ...

class Obligation(_message.Message):
    __slots__ = ("code", "description", "params")
    CODE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    code: str
    description: str
    params: _struct_pb2.Struct
    def __init__(self, code: _Optional[str] = ..., description: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("outcome", "reasons", "warnings", "constraints", "obligations", "bundle_revision", "decision_id", "decided_at", "evaluation_time", "tenant", "kind")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    OBLIGATIONS_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_REVISION_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_TIME_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    outcome: Outcome
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    warnings: _containers.RepeatedCompositeFieldContainer[Reason]
    constraints: Constraints
    obligations: _containers.RepeatedCompositeFieldContainer[Obligation]
    bundle_revision: str
    decision_id: str
    decided_at: _timestamp_pb2.Timestamp
    evaluation_time: _duration_pb2.Duration
    tenant: str
    kind: str
    def __init__(self, outcome: _Optional[_Union[Outcome, str]] = ..., reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ..., warnings: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ..., constraints: _Optional[_Union[Constraints, _Mapping]] = ..., obligations: _Optional[_Iterable[_Union[Obligation, _Mapping]]] = ..., bundle_revision: _Optional[str] = ..., decision_id: _Optional[str] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., evaluation_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., tenant: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...
