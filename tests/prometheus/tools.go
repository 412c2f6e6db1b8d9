//go:build tools

// Package tools pins the two Prometheus programs the tests run, so go.mod and go.sum
// record every module they need; tests/prometheus/build compiles them from here.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/promtool"
	_ "github.com/prometheus/pushgateway"
)
