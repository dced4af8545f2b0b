"""Versioned, signed OPA bundles: building, signing keys, and serving them to OPA."""
