"""Impact analysis of a policy change: recorded decisions decided again by a candidate bundle.

`pdp replay --candidate <git ref | bundle file | policy folder>` reads the decision log's kept
intents (pdp/records/intents.py), evaluates them in-process on the wasm engine in batches, and
reports every decision whose outcome, reason set or constraints would change (docs/policy-changes.md).
The shadow evaluator of `pdp serve --shadow-bundle` writes the same change entries as it sees live
traffic, and the same report reads them.
"""
