"""Shared serving plumbing, with no policy and no substrate in it: listeners (`listen`), TLS
serving certificates that reload in place (`servingcert`, `serving`), local certificates for tests
and demos (`certs`), PEM helpers, the JSON-over-HTTP front the enforcement points and the bundle
server stand on (`jsonhttp`), and the `/metrics` listener (`metrics_http`)."""
