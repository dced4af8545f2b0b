"""Kubernetes enforcement points: the validating admission webhook and the kube-scheduler
extender, both deciding through the one DecisionPoint."""
