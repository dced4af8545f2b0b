"""Kueue: the platform's and each tenant's Kueue objects rendered from policy (objects.py), and the
PDP as a Kueue AdmissionCheck controller (controller.py, deciding through checks.py)."""
