"""The `pdp` subcommands, one module per group. `pdp.cli` imports only the group of the command
it runs, and each command imports its heavy dependencies (gRPC, OPA, servers) when it runs: the
one-shot `pdp decide` loads none of them."""
