"""The product API's request bodies: the routes' own models, which the console's forms reuse so a
form and the API validate one shape."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from pdp.schemas import inlined


class TenantDocument(BaseModel):
    # The tenant schema itself (pdp/schemas/tenant.schema.json), so a client generated from
    # /openapi.json knows every field; the document is validated against it on arrival.
    tenant: dict[str, Any] = Field(
        description="the inner tenant object of a tenant policy document",
        json_schema_extra=inlined("tenant", "tenant"),
    )


class DeployRequest(BaseModel):
    deployment: str
    gpu_class: str
    gpus_per_replica: int
    replicas: int
    sharing: str = "none"
    cluster: str | None = None
    batch_size: int | None = None
    runtime: str | None = None
    model: str | None = None
    min_replicas: int | None = Field(
        default=None,
        ge=0,
        description="the fewest replicas a degradation may scale it to when capacity is short "
        "(standard tier; default: preempted whole); at most `replicas`",
    )

    @model_validator(mode="after")
    def _minimum_within_replicas(self) -> DeployRequest:
        if self.min_replicas is not None and self.min_replicas > self.replicas:
            raise ValueError(f"min_replicas {self.min_replicas} is above replicas {self.replicas}")
        return self


class ScaleRequest(BaseModel):
    target_replicas: int


class BatchSizeRequest(BaseModel):
    batch_size: int


class SharingRequest(BaseModel):
    mode: str
    gpu_class: str | None = None


class QuotaRequest(BaseModel):
    entitlements: dict[str, int] = Field(description="the complete new entitlement set")


class SlaChange(BaseModel):
    tier: Literal["enterprise", "standard", "spot"] | None = Field(default=None, description="the new tier")
    isolation: Literal["dedicated", "shared"] | None = Field(default=None, description="the new isolation")


class OffboardRequest(BaseModel):
    reason: str = ""


class CapacityExhaustion(BaseModel):
    tenant: str = Field(description="the tenant whose deployment cannot be placed")
    deployment: DeployRequest
    gpus: int | None = Field(
        default=None, ge=1, description="GPUs that must be freed to place it (default: all it asks for)"
    )
    queue: bool = Field(default=True, description="queue the request when preemption cannot place it")


class CapacityRetry(BaseModel):
    free_gpus: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict,
        description="GPUs per class the scheduler reports free now (optional; recorded before the retry)",
    )


class ApprovalAnswer(BaseModel):
    approved: bool = True
    comment: str = ""
