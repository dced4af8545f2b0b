"""The Argo CD example (deploy/argocd) read statically: the policy Application's kustomization
generates exactly the ConfigMaps the chart's bundle server mounts, with every tenant document of
examples/tenants and the fleet under the key the build reads; the chart Application points at the
chart with values its schema accepts and the real helm renders; both sync automatically with
prune, self-heal and server-side apply. (tests/e2e/test_argocd_e2e.py has the API server validate
them against Argo CD's CRD.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.argocd import CHART_APP, CHART_OCI_APP, POLICY, POLICY_APP, ROOT, load, policy_objects
from tests.helm import helm, key

CHART = ROOT / "deploy" / "helm" / "gpupaas"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def _generators() -> dict[str, list[tuple[str, Path]]]:
    """ConfigMap name -> [(key, file)], keys as kustomize names them (`key=path` or the basename)."""
    out = {}
    for gen in load(POLICY / "kustomization.yaml")["configMapGenerator"]:
        entries = []
        for item in gen["files"]:
            name, _, path = item.rpartition("=")
            entries.append((name or Path(path).name, (POLICY / path).resolve()))
        out[gen["name"]] = entries
    return out


def _bundle_server() -> str:
    return (CHART / "templates" / "bundle-server.yaml").read_text()


def test_policy_generates_the_configmaps_the_chart_reads() -> None:
    generators = _generators()
    assert set(generators) == {VALUES["policy"]["tenantsConfigMap"], VALUES["policy"]["fleetConfigMap"]}
    template = _bundle_server()
    assert "{name: tenants, configMap: {name: {{ .Values.policy.tenantsConfigMap }}}}" in template
    assert "{name: fleet, configMap: {name: {{ .Values.policy.fleetConfigMap }}}}" in template
    # The build reads the fleet at /config/fleet/fleet.yaml: the ConfigMap's key must be fleet.yaml.
    assert "--fleet=/config/fleet/fleet.yaml" in template
    fleet = generators[VALUES["policy"]["fleetConfigMap"]]
    assert fleet == [("fleet.yaml", ROOT / "examples" / "fleet.yaml")]


def test_policy_lists_every_tenant_document() -> None:
    tenants = sorted((ROOT / "examples" / "tenants").iterdir())
    listed = _generators()[VALUES["policy"]["tenantsConfigMap"]]
    assert sorted(path for _, path in listed) == tenants
    assert sorted(k for k, _ in listed) == [p.name for p in tenants]


def test_policy_names_are_fixed_and_in_the_chart_namespace() -> None:
    kustomization = load(POLICY / "kustomization.yaml")
    # With the hash suffix the chart (another Application) would mount names that do not exist.
    assert kustomization["generatorOptions"]["disableNameSuffixHash"] is True
    assert kustomization["namespace"] == VALUES["namespace"]


def test_rollout_hook_restarts_the_bundle_server_only() -> None:
    objs = {o["kind"]: o for o in policy_objects()}
    job = objs["Job"]
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PostSync"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["rollout", "restart", "deployment/pdp-bundles"]
    assert "kind: Deployment\nmetadata:\n  name: pdp-bundles\n" in _bundle_server()
    (rule,) = objs["Role"]["rules"]
    assert rule["resourceNames"] == ["pdp-bundles"] and set(rule["verbs"]) == {"get", "patch"}


def _sync(app: dict[str, Any]) -> None:
    policy = app["spec"]["syncPolicy"]
    assert policy["automated"] == {"prune": True, "selfHeal": True}
    assert "ServerSideApply=true" in policy["syncOptions"]


def test_chart_application() -> None:
    app = load(CHART_APP)
    source = app["spec"]["source"]
    assert (ROOT / source["path"] / "Chart.yaml").is_file()
    assert source["path"] == str(CHART.relative_to(ROOT))
    values = source["helm"]["valuesObject"]
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    jsonschema.validate({**VALUES, **values}, schema)
    assert values["policy"]["tenantsConfigMap"] == VALUES["policy"]["tenantsConfigMap"]
    assert values["policy"]["fleetConfigMap"] == VALUES["policy"]["fleetConfigMap"]
    assert app["spec"]["destination"]["namespace"] == values["namespace"]
    _sync(app)


def test_policy_application() -> None:
    app = load(POLICY_APP)
    source = app["spec"]["source"]
    assert (ROOT / source["path"]).resolve() == POLICY
    assert source["kustomize"]["namespace"] == VALUES["namespace"]
    _sync(app)


def test_chart_application_values_render_the_chart(tmp_path: Path) -> None:
    """The Application's values through the real helm (scripts/build-helm): the chart renders
    with them, and the bundle server mounts the ConfigMaps the policy Application makes."""
    values = load(CHART_APP)["spec"]["source"]["helm"]["valuesObject"]
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    out = helm("template", "gpupaas", str(CHART), "-f", str(tmp_path / "values.yaml"))
    assert out.returncode == 0, out.stderr
    objs = {key(o): o for o in yaml.safe_load_all(out.stdout) if o}
    bundles = objs[f"Deployment/{values['namespace']}/pdp-bundles"]
    mounted = {
        v["name"]: v["configMap"]["name"]
        for v in bundles["spec"]["template"]["spec"]["volumes"]
        if "configMap" in v
    }
    assert mounted == {"tenants": "pdp-tenants", "fleet": "pdp-fleet"}
    assert set(mounted.values()) == set(_generators())
    hooks = objs["ValidatingWebhookConfiguration//gpupaas-pdp"]
    assert hooks["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "gpupaas-system/pdp-tls"


def test_chart_application_with_bundles_from_oci_renders_without_a_bundle_server(tmp_path: Path) -> None:
    """The OCI variant: the same release, the bundle pinned by digest, no bundle server, and OPA's
    egress only to the registry."""
    app = load(CHART_OCI_APP)
    assert app["metadata"]["name"] == load(CHART_APP)["metadata"]["name"]  # one release, two ways
    values = app["spec"]["source"]["helm"]["valuesObject"]
    jsonschema.validate({**VALUES, **values}, yaml.safe_load((CHART / "values.schema.json").read_text()))
    reference = values["bundles"]["ociReference"]
    assert "@sha256:" in reference  # Git records the exact revision
    _sync(app)
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    out = helm("template", "gpupaas", str(CHART), "-f", str(tmp_path / "values.yaml"))
    assert out.returncode == 0, out.stderr
    objs = {key(o): o for o in yaml.safe_load_all(out.stdout) if o}
    assert not [k for k in objs if k.endswith("/pdp-bundles")]
    pod = objs[f"Deployment/{values['namespace']}/pdp"]["spec"]["template"]["spec"]
    opa = next(c for c in pod["containers"] if c["name"] == "opa")
    assert f"--set=bundles.gpupaas.resource={reference}" in opa["args"]
    egress = objs[f"NetworkPolicy/{values['namespace']}/pdp"]["spec"]["egress"]
    assert egress[0]["to"] == [{"ipBlock": {"cidr": values["bundles"]["registryCIDR"]}}]
