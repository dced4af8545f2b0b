"""The bundle as OPA is told about it: its name, the file a bundle server serves, and how its
signature is checked (RS256 under one key id, as `opa build --signing-key` writes it).

Defined here, on OPA's side, so that pdp/bundles/ (which builds bundles with the OPA binary)
imports pdp/opa/ and never the other way round.
"""

from __future__ import annotations

BUNDLE_NAME = "gpupaas"
CURRENT_BUNDLE = f"{BUNDLE_NAME}.tar.gz"
CURRENT_WASM_BUNDLE = f"{BUNDLE_NAME}.wasm.tar.gz"
SIGNING_ALG = "RS256"
KEY_ID = "gpupaas"
