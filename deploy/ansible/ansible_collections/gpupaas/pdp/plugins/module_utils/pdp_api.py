# Copyright: gpupaas-pdp contributors
# Apache License 2.0
"""The PDP's HTTP/JSON decision API, shared by the decide module and the decision lookup.

Connection options are defined once here (CONNECTION_ARGSPEC, documented by the
gpupaas.pdp.connection doc fragment); both plugins turn their options into a `Connection`.
"""

from __future__ import annotations

import json

from ansible.module_utils.basic import env_fallback
from ansible.module_utils.urls import open_url

try:  # ansible-core 2.16+: the standard library, as module_utils now prefers
    from urllib.error import HTTPError, URLError
except ImportError:  # pragma: no cover
    from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError

OUTCOMES = ("ALLOW", "DENY", "NEEDS_APPROVAL")

CONNECTION_ARGSPEC = dict(
    url=dict(type="str", required=True, fallback=(env_fallback, ["GPUPAAS_PDP_URL"])),
    token=dict(type="str", no_log=True, fallback=(env_fallback, ["GPUPAAS_PDP_TOKEN"])),
    token_file=dict(type="path", fallback=(env_fallback, ["GPUPAAS_PDP_TOKEN_FILE"])),
    timeout=dict(type="float", default=5.0),
    validate_certs=dict(type="bool", default=True),
    ca_path=dict(type="path"),
    fail_on=dict(type="list", elements="str", default=["DENY", "NEEDS_APPROVAL"]),
)


class PdpError(Exception):
    """The PDP could not be asked, or refused the request; the message says which and why."""


class Connection(object):
    def __init__(self, url, token=None, token_file=None, timeout=5.0, validate_certs=True, ca_path=None):
        if not url:
            raise PdpError("url is required (or set GPUPAAS_PDP_URL)")
        self.url = url.rstrip("/")
        self.token = token
        self.token_file = token_file
        self.timeout = float(timeout)
        self.validate_certs = validate_certs
        self.ca_path = ca_path

    @classmethod
    def from_options(cls, get):
        """`get(name)` returns an option's value (module params or a lookup's get_option)."""
        return cls(
            url=get("url"),
            token=get("token"),
            token_file=get("token_file"),
            timeout=get("timeout"),
            validate_certs=get("validate_certs"),
            ca_path=get("ca_path"),
        )

    def _token(self):
        if self.token:
            return self.token
        if self.token_file:
            try:
                with open(self.token_file) as f:
                    return f.readline().strip()
            except (IOError, OSError) as exc:
                raise PdpError("cannot read token_file %s: %s" % (self.token_file, exc))
        return None

    def decide(self, intents):
        """The decisions of `intents` (a list of intent documents), in order, one bundle revision."""
        headers = {
            "Content-Type": "application/json",
            # The PDP answers DENY (ENGINE_TIMEOUT) before this, rather than leaving us to time out.
            "Request-Timeout": "%dms" % int(self.timeout * 800),
        }
        token = self._token()
        if token:
            headers["Authorization"] = "Bearer " + token
        body = json.dumps({"intents": list(intents)})
        try:
            response = open_url(
                self.url + "/v1/decide/batch",
                data=body,
                headers=headers,
                method="POST",
                timeout=self.timeout,
                validate_certs=self.validate_certs,
                ca_path=self.ca_path,
            )
            doc = json.loads(response.read())
        except HTTPError as exc:
            raise PdpError(_http_problem(exc))
        except URLError as exc:
            raise PdpError("cannot reach the PDP at %s: %s" % (self.url, exc.reason))
        except (IOError, OSError, ValueError) as exc:
            raise PdpError("no usable answer from the PDP at %s: %s" % (self.url, exc))
        decisions = doc.get("decisions") if isinstance(doc, dict) else None
        if not isinstance(decisions, list) or len(decisions) != len(intents):
            raise PdpError("the PDP's answer is not a batch of %d decisions" % len(intents))
        return decisions


def _http_problem(exc):
    try:
        doc = json.loads(exc.read())
        detail = doc.get("error", "")
    except Exception:
        detail = ""
    if exc.code == 400:
        return "the PDP refused the intent: %s" % detail
    if exc.code == 401:
        return "the PDP refused the bearer token (HTTP 401): %s" % detail
    return "the PDP answered HTTP %d: %s" % (exc.code, detail or exc.reason)


def explain(decision):
    """One line per reason: 'DENY RESIDENCY_VIOLATION: <message> (decision <id>)'."""
    reasons = decision.get("reasons") or [{"code": "-", "message": "no reason given"}]
    return [
        "%s %s: %s (decision %s)"
        % (decision.get("outcome"), r.get("code"), r.get("message"), decision.get("decision_id"))
        for r in reasons
    ]


def failures(decisions, fail_on):
    """The explanation lines of the decisions whose outcome is in `fail_on`."""
    bad = set(o.upper() for o in fail_on)
    unknown = bad - set(OUTCOMES)
    if unknown:
        raise PdpError("fail_on: unknown outcome(s) %s (known: %s)" % (sorted(unknown), ", ".join(OUTCOMES)))
    lines = []
    for d in decisions:
        if d.get("outcome") in bad:
            lines.extend(explain(d))
    return lines
