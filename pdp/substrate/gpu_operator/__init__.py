"""The NVIDIA GPU operator: per-pool GPU sharing (device plugin and MIG manager configuration, node
labels) rendered from the fleet, and applied when the fleet changes."""
