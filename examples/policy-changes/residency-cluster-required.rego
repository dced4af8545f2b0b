# The worked example of docs/policy-changes.md: a residency rule tightened. Appended to
# policies/gpupaas/residency/residency.rego, it refuses a deployment that leaves the choice of
# cluster to placement when the tenant's data is bound to a jurisdiction.

# METADATA
# title: Deployment without a named cluster
# description: A tenant whose data is bound to a jurisdiction names the cluster it deploys on.
# custom:
#   code: RESIDENCY_CLUSTER_REQUIRED
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.residency"} if {
	input.kind == "deploy_model"
	lib.tenant.data_residency != "any"
	not lib.payload.cluster
	msg := sprintf(`tenant "%s" (data_residency %s) must name the cluster of deployment "%s"`, [lib.tenant_name, lib.tenant.data_residency, lib.payload.deployment])
	meta := rego.metadata.rule()
}
