// Package observability proves the project's monitoring against real
// servers: the Grafana dashboards and Prometheus rules in observability/
// (schema, promtool check and unit tests), every dashboard query and
// recording rule evaluated by a real Prometheus scraping a running
// gateway, counter and consumer under load, and the trace of one like
// fetched from a real Jaeger (gateway → counter → Redis script, linked
// from the relay's Kafka produce and the consumer's apply). It is its own
// module and has no code besides its tests.
package observability
