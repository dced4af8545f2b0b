"""Kubernetes: tenant objects and workload objects rendered from policy and decisions, and the
server-side-apply adapter the lifecycle drives."""
