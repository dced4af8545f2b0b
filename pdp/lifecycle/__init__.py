"""Lane 2, the tenant lifecycle: the durable workflows behind the product API (pdp/product/).

One way down: the worker (`worker`) runs the workflows (`workflows/`), which use the services
(`services/`), which run against the runtime (`runtime`), which holds the state (`storage/`).

Every intent is decided by the PDP (`pdp.point.DecisionPoint`) first; workflows run on DBOS
Transact, apply Kubernetes objects through an adapter, and record every transition in a
hash-chained audit trail. See docs/lifecycle.md.
"""
