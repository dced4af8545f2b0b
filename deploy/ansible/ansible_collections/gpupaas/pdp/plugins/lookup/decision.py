# Copyright: gpupaas-pdp contributors
# Apache License 2.0
from __future__ import annotations

DOCUMENTATION = r"""
name: decision
short_description: Decisions of the gpupaas PDP on intents, on the controller
description:
  - Each term is an intent document; returns their decision documents, decided together in one
    call to the PDP's HTTP API (one bundle revision).
  - A decision whose outcome is in O(fail_on) raises an error naming its reason codes and decision
    id; set O(fail_on) to an empty list to inspect denials instead.
  - Lookups run on the controller and are evaluated lazily (each time the variable is used); store
    the result with C(set_fact) when it is used more than once.
version_added: 0.1.0
author: gpupaas-pdp
extends_documentation_fragment:
  - gpupaas.pdp.connection
options:
  _terms:
    description: Intent documents.
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Outcome of a deployment, without failing on a denial
  ansible.builtin.debug:
    msg: "{{ lookup('gpupaas.pdp.decision', intent, url=pdp_url, fail_on=[])['outcome'] }}"
"""

RETURN = r"""
_raw:
  description: The decision documents, in the order of the terms.
  type: list
  elements: dict
"""

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

from ansible_collections.gpupaas.pdp.plugins.module_utils.pdp_api import Connection, PdpError, failures


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        for i, term in enumerate(terms):
            if not isinstance(term, dict):
                raise AnsibleError("gpupaas.pdp.decision: term %d is not an intent document (a mapping)" % i)
        try:
            decisions = Connection.from_options(self.get_option).decide(terms)
            failed = failures(decisions, self.get_option("fail_on"))
        except PdpError as exc:
            raise AnsibleError("gpupaas PDP: %s" % exc)
        if failed:
            raise AnsibleError("gpupaas PDP: " + "; ".join(failed))
        return decisions
