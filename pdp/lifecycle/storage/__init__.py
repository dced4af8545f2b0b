"""The lifecycle's durable state: the database (`db`), the store over it (`store`: tenants,
deployments, approvals, pools), credentials and their bearer tokens, the tenant documents, the
hash-chained audit trail and its signed anchor. Nothing here imports a service or a workflow."""
