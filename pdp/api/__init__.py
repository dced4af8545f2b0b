"""The gRPC front of the PDP: request translation, a thin servicer, and the server with health
and reflection."""
