# The PDP image: Python service plus the official OPA binary (used by `pdp build` to check and
# sign bundles; at runtime OPA runs as its own container, see docker-compose.yml).
FROM openpolicyagent/opa:1.22.3-static AS opa

FROM python:3.11-slim
COPY --from=opa /opa /usr/local/bin/opa
# Checkpoints of the decision log and the audit trail go outside the state folder (var/) by default:
# into the user's state home, which uid 10001 has none of; here, a folder of its own (a volume in
# docker-compose.yml and the Kubernetes manifests: the root filesystem is read-only there).
ENV PDP_OPA_BIN=/usr/local/bin/opa PYTHONUNBUFFERED=1 PDP_CHECKPOINT_HOME=/app/checkpoints
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pdp ./pdp
RUN pip install --no-cache-dir .
COPY policies ./policies
COPY examples ./examples
# Numeric ids: Kubernetes' runAsNonRoot can only verify a numeric USER, and docker-compose.yml's
# init-volumes hands the named volumes to the same 10001:10001.
RUN groupadd --gid 10001 pdp && useradd --uid 10001 --gid 10001 --no-create-home pdp \
    && mkdir -p bundles var .keys checkpoints /pub /pki /cacert && chmod 0700 checkpoints \
    && chown -R 10001:10001 /app /pub /pki /cacert
USER 10001:10001
EXPOSE 50051 8282
# Off loopback the PDP asks its callers for a bearer token: mount a file of 'PRINCIPAL TOKEN' lines
# (mode 0600, owned by 10001) here, or start without it only on loopback (docs/configuration.md).
CMD ["pdp", "serve", "--opa-addr", "opa:8181", "--listen", "0.0.0.0:50051", "--insecure", \
     "--token-file", "/app/var/decision-tokens"]
