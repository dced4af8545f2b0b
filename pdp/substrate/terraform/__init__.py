"""Terraform / OpenTofu: the plan check, the enforcement hook of infrastructure code (a plan's GPU
capacity changes become one change_capacity intent, `pdp check-plan`)."""
