#!/usr/bin/python
# Copyright: gpupaas-pdp contributors
# Apache License 2.0
from __future__ import annotations

DOCUMENTATION = r"""
module: decide
short_description: Ask the gpupaas PDP for decisions on intents
description:
  - Sends one intent or several to the PDP's HTTP API (C(POST /v1/decide/batch)), in one evaluation
    and so on one bundle revision, and returns the decision documents.
  - A decision whose outcome is in O(fail_on) fails the task with its reason codes, messages and
    decision ids. The PDP being unreachable, refusing the token or the intent also fails the task,
    since a question that got no answer is never taken for an allow.
  - Read-only, so it also runs in check mode; it never reports a change.
version_added: 0.1.0
author: gpupaas-pdp
extends_documentation_fragment:
  - gpupaas.pdp.connection
options:
  intent:
    description: One intent document (docs/decision-contract.md).
    type: dict
  intents:
    description: Several intent documents, decided together.
    type: list
    elements: dict
notes:
  - Give O(intent) or O(intents).
"""

EXAMPLES = r"""
- name: May acme-eu deploy on eu-west?
  gpupaas.pdp.decide:
    url: https://pdp.example:8443
    token_file: /etc/gpupaas/pdp.token
    intent:
      kind: deploy_model
      tenant: acme-eu
      deploy_model: {deployment: llama, gpu_class: H100-80GB, gpus_per_replica: 2, replicas: 1, cluster: eu-west}
  register: verdict
"""

RETURN = r"""
outcome:
  description: Outcome of the (first) decision.
  type: str
  returned: success
  sample: ALLOW
decision:
  description: The (first) decision document.
  type: dict
  returned: success
decisions:
  description: Every decision, in the order of the intents.
  type: list
  elements: dict
  returned: success
decision_ids:
  description: The decision ids, as recorded in the PDP's decision log.
  type: list
  elements: str
  returned: always
reasons:
  description: The reasons of every decision, one line each (outcome, code, message, decision id).
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gpupaas.pdp.plugins.module_utils.pdp_api import (
    CONNECTION_ARGSPEC,
    Connection,
    PdpError,
    explain,
    failures,
)


def main():
    argument_spec = dict(
        intent=dict(type="dict"),
        intents=dict(type="list", elements="dict"),
        **CONNECTION_ARGSPEC
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[("intent", "intents")],
        required_one_of=[("intent", "intents")],
        supports_check_mode=True,
    )
    intents = module.params["intents"] or [module.params["intent"]]
    try:
        decisions = Connection.from_options(module.params.get).decide(intents)
        failed = failures(decisions, module.params["fail_on"])
    except PdpError as exc:
        module.fail_json(msg="gpupaas PDP: %s" % exc, decision_ids=[], reasons=[])
    result = dict(
        changed=False,
        outcome=decisions[0].get("outcome"),
        decision=decisions[0],
        decisions=decisions,
        decision_ids=[d.get("decision_id") for d in decisions],
        reasons=[line for d in decisions for line in explain(d) if d.get("reasons")],
    )
    if failed:
        module.fail_json(msg="gpupaas PDP: " + "; ".join(failed), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
