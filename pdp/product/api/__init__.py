"""The product API (FastAPI): `app` assembles the routers, one module per resource (`tenants`,
`capacity`, `rollouts`, ...); `auth` (pdp/product/auth.py) says who is asking; `errors` and
`error_text` answer malformed requests; `accepted` answers a request whose workflow started."""
