//go:build tools

// Package tools pins promtool and the Prometheus server; tests/prometheus/build compiles
// both from this module. The Pushgateway has a module of its own: it breaks with the newer
// prometheus/common that the prometheus module requires.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
