//go:build tools

// Package tools pins promtool; tests/prometheus/build compiles it from this module.
// The Pushgateway has a module of its own: it breaks with the newer prometheus/common
// that the prometheus module requires.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
