"""Inference gateway: per deployment, the Gateway API route and the Gateway API Inference
Extension's pool and objective that carry a tenant's endpoint to its model servers (pure rendering
in routes.py; the lifecycle applies them through the Kubernetes adapter,
pdp/lifecycle/services/realize/)."""
