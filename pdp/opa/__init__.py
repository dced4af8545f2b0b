"""The pinned OPA binary: finding it, running its CLI, and supervising it as a sidecar."""
