"""Lane 1, the product: the northbound product API (`api/`, one module per resource), its
authentication (`auth`), the web console (`console/`) and the HTTP client of `pdp lifecycle`
(`client`). It reaches lane 2 (pdp/lifecycle/) through its services and store, never a substrate."""
