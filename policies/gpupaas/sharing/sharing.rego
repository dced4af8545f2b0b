# METADATA
# title: Sharing
# description: >-
#   GPU sharing (time-slicing, MPS, MIG and the shared GPU resources): only for tenants that
#   allow it, and only where an eligible pool offers the mode.
package gpupaas.sharing

import data.gpupaas.lib

# METADATA
# title: Sharing mode forbidden
# description: The intent asks for a sharing mode and the tenant forbids GPU sharing.
# custom:
#   code: SHARING_NOT_ALLOWED
_mode_deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.sharing"} if {
	lib.sharing_forbidden
	msg := lib.message([`tenant "`, lib.tenant_name, `" sets allow_gpu_sharing false; `, lib.subject, " asks for sharing mode ", lib.requested_sharing])
	meta := rego.metadata.rule()
}

# METADATA
# title: Sharing mode unavailable
# description: No pool the tenant may use offers the sharing mode.
# custom:
#   code: SHARING_MODE_UNAVAILABLE
_mode_deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.sharing"} if {
	lib.sharing_unavailable
	msg := lib.message(["no ", lib.tenant.isolation, " pool of GPU class [", lib.names(lib.intent_classes), "] in data_residency ", lib.tenant.data_residency, ` of tenant "`, lib.tenant_name, `" offers sharing mode `, lib.requested_sharing])
	meta := rego.metadata.rule()
}

# METADATA
# title: Shared GPU resources forbidden
# description: The workload asks for shared or MIG GPU resources and the tenant forbids GPU sharing.
# custom:
#   code: SHARING_NOT_ALLOWED
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.sharing"} if {
	lib.tenant.allow_gpu_sharing != true
	count(lib.shared_gpu_resources) > 0
	msg := lib.message([`tenant "`, lib.tenant_name, `" sets allow_gpu_sharing false; `, lib.subject, " asks for shared GPU resources [", lib.names(lib.shared_gpu_resources), "]"])
	meta := rego.metadata.rule()
}

# how the node shares its GPUs, if it does
_node_sharing(labels) := strategy if {
	strategy := labels["nvidia.com/gpu.sharing-strategy"]
	strategy in {"time-slicing", "mps"}
} else := "mig" if {
	labels["nvidia.com/mig.strategy"] != "none"
} else := "shared product" if {
	some key in lib.class_label_keys
	endswith(labels[key], "-SHARED")
}

# METADATA
# title: Shared node
# description: The node shares its GPUs and the tenant forbids GPU sharing.
# custom:
#   code: SHARING_NOT_ALLOWED
node_rejections[node.name] contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.sharing"} if {
	lib.tenant.allow_gpu_sharing != true
	some node in lib.candidate_nodes
	how := _node_sharing(lib.node_labels(node))
	msg := lib.message([`node "`, node.name, `" shares its GPUs (`, how, `) and tenant "`, lib.tenant_name, `" sets allow_gpu_sharing false`])
	meta := rego.metadata.rule()
}

# The rules named _mode_deny judge the sharing mode an intent asks for (lib.requested_sharing),
# which only deploy_model and request_gpu_sharing do: one rule per kind, which OPA's indexer
# skips for the others without starting either rule (docs/performance.md).
deny contains r if {
	input.kind == "deploy_model"
	some r in _mode_deny
}

deny contains r if {
	input.kind == "request_gpu_sharing"
	some r in _mode_deny
}
