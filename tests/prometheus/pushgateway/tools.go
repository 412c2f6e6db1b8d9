//go:build tools

// Package tools pins the Pushgateway with the dependencies it was released with;
// tests/prometheus/build compiles it from this module.
package tools

import _ "github.com/prometheus/pushgateway"
