// Package examples holds the example cluster configuration and task
// catalog that `celeroot dev` applies: the cluster from the architecture
// document (cluster.yaml) and a catalog implementing its tasks (catalog/).
package examples

import "embed"

// FS holds cluster.yaml and catalog/*.yaml.
//
//go:embed cluster.yaml catalog/*.yaml
var FS embed.FS
