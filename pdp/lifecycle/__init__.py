"""Tenant lifecycle: the northbound product API and the durable workflows behind it.

Every intent is decided by the PDP (`pdp.point.DecisionPoint`) first; workflows run on DBOS
Transact, apply Kubernetes objects through an adapter, and record every transition in a
hash-chained audit trail. See docs/lifecycle.md.
"""
