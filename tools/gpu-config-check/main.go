// Command gpu-config-check parses GPU operator configuration with NVIDIA's own parsers, so the
// tests know that what the platform renders (pdp/substrate/gpu_operator) is what the NVIDIA
// device plugin and the MIG manager accept.
//
// Input (stdin, JSON): {"device_plugin": {"<config name>": "<config YAML>", ...},
// "mig_parted": "<mig-parted config YAML>"}. Output (stdout, JSON): per device plugin config, the
// sharing strategy, MIG strategy and replicas the plugin derives from it (GPU feature discovery
// publishes the first two as the node labels nvidia.com/gpu.sharing-strategy and
// nvidia.com/mig.strategy) or the parser's error; the MIG configs mig-parted read, or its error.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	spec "github.com/NVIDIA/k8s-device-plugin/api/config/v1"
	migspec "github.com/NVIDIA/mig-parted/api/spec/v1"
	"github.com/urfave/cli/v2"
	"sigs.k8s.io/yaml"
)

type input struct {
	DevicePlugin map[string]string `json:"device_plugin"`
	MigParted    *string           `json:"mig_parted"`
}

type pluginResult struct {
	Error           string `json:"error,omitempty"`
	SharingStrategy string `json:"sharing_strategy,omitempty"`
	MigStrategy     string `json:"mig_strategy,omitempty"`
	Replicas        int    `json:"replicas,omitempty"`
	RenameByDefault bool   `json:"rename_by_default,omitempty"`
}

type migResult struct {
	Error   string                    `json:"error,omitempty"`
	Configs map[string][]migConfigOut `json:"configs,omitempty"`
}

type migConfigOut struct {
	Devices    any            `json:"devices"`
	MigEnabled bool           `json:"mig_enabled"`
	MigDevices map[string]int `json:"mig_devices"`
}

// loadPluginConfig reads one config file the way nvidia-device-plugin's main does (v0.18.0
// cmd/nvidia-device-plugin/main.go loadConfig: spec.NewConfig over its CLI flags, then
// DisableResourceNamingInConfig), then the checks of its validateFlags that need no GPU.
func loadPluginConfig(path string) (*spec.Config, error) {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "config-file"},
		&cli.StringFlag{Name: "mig-strategy", Value: spec.MigStrategyNone},
		&cli.BoolFlag{Name: "fail-on-init-error", Value: true},
		&cli.StringFlag{Name: "mps-root", Value: "/run/nvidia/mps"},
		&cli.StringFlag{Name: "device-discovery-strategy", Value: "auto"},
		&cli.StringFlag{Name: "device-id-strategy", Value: spec.DeviceIDStrategyUUID},
		&cli.StringSliceFlag{Name: "device-list-strategy", Value: cli.NewStringSlice(spec.DeviceListStrategyEnvVar)},
	}
	var config *spec.Config
	app := &cli.App{
		Name:  "gpu-config-check",
		Flags: flags,
		Action: func(c *cli.Context) error {
			var err error
			config, err = spec.NewConfig(c, flags)
			return err
		},
	}
	if err := app.Run([]string{"gpu-config-check", "--config-file", path}); err != nil {
		return nil, err
	}
	spec.DisableResourceNamingInConfig(config)
	if config.Sharing.SharingStrategy() == spec.SharingStrategyMPS && *config.Flags.MigStrategy == spec.MigStrategyMixed {
		return nil, fmt.Errorf("using --mig-strategy=mixed is not supported with MPS")
	}
	switch *config.Flags.MigStrategy {
	case spec.MigStrategyNone, spec.MigStrategySingle, spec.MigStrategyMixed:
	default:
		return nil, fmt.Errorf("unknown MIG strategy: %v", *config.Flags.MigStrategy)
	}
	return config, nil
}

func checkPlugin(dir, name, text string) pluginResult {
	// The plugin's parser ignores unknown fields: a misspelt key would pass it and do nothing.
	if err := yaml.UnmarshalStrict([]byte(text), &spec.Config{}); err != nil {
		return pluginResult{Error: fmt.Sprintf("strict parse: %v", err)}
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return pluginResult{Error: err.Error()}
	}
	config, err := loadPluginConfig(path)
	if err != nil {
		return pluginResult{Error: err.Error()}
	}
	out := pluginResult{
		SharingStrategy: string(config.Sharing.SharingStrategy()),
		MigStrategy:     *config.Flags.MigStrategy,
	}
	if out.SharingStrategy != string(spec.SharingStrategyNone) {
		rr := config.Sharing.ReplicatedResources()
		out.RenameByDefault = rr.RenameByDefault
		for _, r := range rr.Resources {
			if r.Replicas > out.Replicas {
				out.Replicas = r.Replicas
			}
		}
	}
	return out
}

func checkMig(text string) migResult {
	var parsed migspec.Spec
	if err := yaml.Unmarshal([]byte(text), &parsed); err != nil {
		return migResult{Error: err.Error()}
	}
	out := migResult{Configs: map[string][]migConfigOut{}}
	for name, entries := range parsed.MigConfigs {
		for _, e := range entries {
			devices := map[string]int{}
			for profile, n := range e.MigDevices {
				devices[profile] = n
			}
			out.Configs[name] = append(out.Configs[name], migConfigOut{Devices: e.Devices, MigEnabled: e.MigEnabled, MigDevices: devices})
		}
	}
	return out
}

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var in input
	if err := json.Unmarshal(raw, &in); err != nil {
		fmt.Fprintln(os.Stderr, "input:", err)
		os.Exit(2)
	}
	dir, err := os.MkdirTemp("", "gpu-config-check")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer os.RemoveAll(dir)
	out := map[string]any{}
	plugin := map[string]pluginResult{}
	names := make([]string, 0, len(in.DevicePlugin))
	for name := range in.DevicePlugin {
		names = append(names, name)
	}
	sort.Strings(names)
	for i, name := range names {
		plugin[name] = checkPlugin(dir, fmt.Sprintf("config-%d.yaml", i), in.DevicePlugin[name])
	}
	out["device_plugin"] = plugin
	if in.MigParted != nil {
		out["mig_parted"] = checkMig(*in.MigParted)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}
