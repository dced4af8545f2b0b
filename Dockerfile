# The PDP image: the wheel (policies, examples, schemas and gRPC stubs inside it) in a virtual
# environment with its pinned runtime closure, plus the OPA binary (used by `pdp build` and the
# embedded default; in docker-compose.yml and the Helm chart OPA also runs as its own container).
#
#   docker build -t gpupaas/pdp:0.1.0 .
#
# scripts/build-image builds these same stages with buildah (no Docker engine, no registry): it
# passes a base made by mmdebstrap from Debian bookworm's packages as PYTHON_IMAGE, an image
# holding the project's pinned OPA build as OPA_IMAGE, and the wheel scripts/build-wheel made
# (WHEEL_STAGE=wheel-given, the wheel in dist/ of its context) instead of building it again.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG OPA_IMAGE=openpolicyagent/opa:1.22.3-static
ARG WHEEL_STAGE=wheel-from-source

FROM ${OPA_IMAGE} AS opa

# The wheel, built from the source with the standard `python -m build` (the same as
# scripts/build-wheel: same pinned build, same fixed timestamp, so the same bytes).
FROM ${PYTHON_IMAGE} AS wheel-from-source
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY pdp ./pdp
COPY policies ./policies
COPY examples ./examples
COPY proto ./proto
RUN python3 -m venv /opt/build && /opt/build/bin/pip install --no-cache-dir build==1.6.1 \
    && SOURCE_DATE_EPOCH=315532800 /opt/build/bin/python -m build --outdir /dist .

FROM scratch AS wheel-given
COPY dist/ /dist/

FROM ${WHEEL_STAGE} AS wheel

# The virtual environment: the wheel and the pinned runtime closure, binary wheels only (nothing
# compiles, and no compiler is in any stage); pip itself removed after. Byte code compiled once
# here (the root file system is read-only in the cluster), by hash, not by the files' times.
FROM ${PYTHON_IMAGE} AS venv
# Where pip reaches PyPI through a proxy with a CA of its own: its bundle, mounted for the build
# only (scripts/build-image passes the host's); unset, pip trusts its own.
ARG PIP_CERT
COPY requirements-runtime.txt /tmp/requirements-runtime.txt
COPY --from=wheel /dist/ /tmp/dist/
RUN python3 -m venv /opt/pdp \
    && /opt/pdp/bin/pip install --no-cache-dir --no-compile --only-binary :all: \
       -r /tmp/requirements-runtime.txt /tmp/dist/*.whl \
    && /opt/pdp/bin/pip uninstall --yes --quiet pip setuptools \
    && /opt/pdp/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/pdp/lib >/dev/null

FROM ${PYTHON_IMAGE}
COPY --from=opa /opa /usr/local/bin/opa
COPY --from=venv /opt/pdp /opt/pdp
# PDP_HOME: the state folders (bundles/, .keys/, var/) of the installed pdp (pdp/opa/binary.py).
# Checkpoints of the decision log and the audit trail go outside the state folder (var/) by default:
# into the user's state home, which uid 10001 has none of; here, a folder of its own (a volume in
# docker-compose.yml and the Kubernetes manifests: the root filesystem is read-only there).
ENV PATH=/opt/pdp/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PDP_OPA_BIN=/usr/local/bin/opa PYTHONUNBUFFERED=1 PDP_HOME=/app PDP_CHECKPOINT_HOME=/app/checkpoints
WORKDIR /app
# Numeric ids: Kubernetes' runAsNonRoot can only verify a numeric USER, and docker-compose.yml's
# init-volumes hands the named volumes to the same 10001:10001.
RUN groupadd --gid 10001 pdp && useradd --uid 10001 --gid 10001 --no-create-home pdp \
    && mkdir -p bundles var .keys checkpoints tls /pub /pki /cacert && chmod 0700 checkpoints \
    && chown -R 10001:10001 /app /pub /pki /cacert
USER 10001:10001
EXPOSE 50051 8282
# By default: the embedded default (OPA supervised inside the container) serving gRPC over TLS
# only, with the certificate and key mounted at /app/tls/ and, off loopback, the callers' tokens
# (a file of 'PRINCIPAL TOKEN' lines, mode 0600, owned by 10001) at /app/var/decision-tokens
# (docs/configuration.md). Without them it refuses to start, naming what is missing. Plaintext
# needs an explicit `--insecure` (docker-compose.yml says it, on its private network).
CMD ["pdp", "serve", "--listen", "0.0.0.0:50051", "--tls-cert", "/app/tls/tls.crt", \
     "--tls-key", "/app/tls/tls.key", "--token-file", "/app/var/decision-tokens"]
