"""What the workflows and the product API do with the lifecycle's state: capacity, placement and
pools, realization on the substrates, rollouts, drift audits, incidents, SLA checks, certificates
of destruction. They run against the runtime (pdp/lifecycle/runtime.py)."""
