"""Tenant policy documents and the fleet inventory: loading, schema validation, contradictions."""

from __future__ import annotations

from pdp.config.documents import (
    ConfigError,
    ConfigErrors,
    PolicyConfig,
    load_config,
    load_tenant_document,
    validate_tenant,
)

__all__ = [
    "ConfigError",
    "ConfigErrors",
    "PolicyConfig",
    "load_config",
    "load_tenant_document",
    "validate_tenant",
]
