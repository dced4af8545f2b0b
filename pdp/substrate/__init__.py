"""Realization: one home per substrate a GPU workload can reach (pure rendering of its objects from
policy, the apply adapter the lifecycle drives, its enforcement hook)."""
