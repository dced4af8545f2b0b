# The PDP image: Python service plus the official OPA binary (used by `pdp build` to check and
# sign bundles; at runtime OPA runs as its own container, see docker-compose.yml).
FROM openpolicyagent/opa:1.22.3-static AS opa

FROM python:3.11-slim
COPY --from=opa /opa /usr/local/bin/opa
ENV PDP_OPA_BIN=/usr/local/bin/opa PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pdp ./pdp
RUN pip install --no-cache-dir .
COPY policies ./policies
COPY examples ./examples
RUN useradd --uid 10001 pdp && mkdir -p bundles var .keys /pub /pki /cacert && chown -R pdp /app /pub /pki /cacert
USER pdp
EXPOSE 50051 8282
CMD ["pdp", "serve", "--opa-addr", "opa:8181", "--listen", "0.0.0.0:50051", "--insecure"]
