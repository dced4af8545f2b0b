"""Tamper-evident records: hash-chained logs checked against trust held outside the state folder.

The decision log (`pdp/records/log.py`) and the lifecycle's audit trail (`pdp/lifecycle/storage/audit.py`)
are both chains: each record's hash covers its position, the previous record's hash and its
content (`chain`). The writer signs checkpoints of the records it committed, with every record's
chain hash in them (`checkpoints`), into a sink it can append to but not rewrite (`sinks`: an
O_APPEND file, a folder of write-once files, or anything with the same two operations, such as an
object-store bucket). Verification (`verify`) needs only the log, that sink and a trusted public
key: wiping, truncating, editing, re-chaining and re-keying the state folder all show, and the
report names the first altered record. docs/records.md says what is detected and what is not.
"""
