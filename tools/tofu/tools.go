//go:build tools

// Records cmd/tofu's dependencies in go.mod/go.sum (a main package cannot be imported otherwise).
package tools

import _ "github.com/opentofu/opentofu/cmd/tofu"
