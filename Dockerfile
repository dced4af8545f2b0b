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
# Numeric ids: Kubernetes' runAsNonRoot can only verify a numeric USER, and docker-compose.yml's
# init-volumes hands the named volumes to the same 10001:10001.
RUN groupadd --gid 10001 pdp && useradd --uid 10001 --gid 10001 --no-create-home pdp \
    && mkdir -p bundles var .keys /pub /pki /cacert && chown -R 10001:10001 /app /pub /pki /cacert
USER 10001:10001
EXPOSE 50051 8282
CMD ["pdp", "serve", "--opa-addr", "opa:8181", "--listen", "0.0.0.0:50051", "--insecure"]
