"""The decision log: every decision appended, hash-chained, behind one interface (`log.RecordLog`).

`log` opens the store the settings name; `model` is a record and the store's protocol; `sqlite`
and `postgres` are the two stores; `read` verifies and exports, `search` finds records, `intents`
keeps the intents beside them for replay. A decision-log field goes in `model` (and the stores'
columns). The `pdp records` command: pdp/commands/records.py.
"""
