# Copyright: gpupaas-pdp contributors
# Apache License 2.0
from __future__ import annotations


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  url:
    description: The PDP's HTTP API, e.g. C(https://pdp.example:8443) (C(pdp serve --http-listen)).
    type: str
    required: true
    env:
      - name: GPUPAAS_PDP_URL
  token:
    description: Bearer token the PDP accepts (C(pdp serve --http-token-file)).
    type: str
    env:
      - name: GPUPAAS_PDP_TOKEN
  token_file:
    description: File whose first line is the bearer token; read at each call, so a rotated file applies at once.
    type: path
    env:
      - name: GPUPAAS_PDP_TOKEN_FILE
  timeout:
    description:
      - Seconds the call may take. The PDP is asked to answer within 80% of it, so a stalled policy
        engine gives a DENY (ENGINE_TIMEOUT) rather than a hung task.
    type: float
    default: 5.0
  validate_certs:
    description: Verify the PDP's TLS certificate.
    type: bool
    default: true
  ca_path:
    description: CA bundle to verify the PDP's certificate with.
    type: path
  fail_on:
    description:
      - Outcomes that fail the task, with every reason code, message and decision id in the message.
      - An empty list never fails on an outcome (the decisions are returned to be inspected).
    type: list
    elements: str
    default: [DENY, NEEDS_APPROVAL]
"""
