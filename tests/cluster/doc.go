// Package cluster holds the failover tests of the clustered middleware:
// the counter's outbox relay and the consumer (real binaries) on a
// three-broker Kafka while the partitions' leader is killed and while the
// consumer group rebalances, and the gateway with two counters registered
// through a Consul client agent while the leader of three Consul servers is
// killed. Each test starts its cluster through scripts/mw.sh (tools/mw) in
// a private state directory on ports of its own and stops it at the end;
// the shared single-node servers (Redis, MariaDB) hold the rest. See
// docs/scaling.md for the figures. It has no code besides its tests.
package cluster
