"""`pdp lifecycle`: the worker (`worker`) and the product API's command-line client, one module
per group of subcommands; `main` builds the group's parser."""
