// Package durabledb is the generated (sqlc) access to the durable record in
// MySQL: its models and every query on it, shared by the services that use
// it — the consumer's batch writes (queries/sink.sql) and the reads of the
// counter's rebuilds and settling, of reconciliation and of tests
// (queries/reads.sql). The schema is owned and migrated by the consumer
// (services/consumer/migrations/sql). Regenerate with `.bin/sqlc generate`;
// never edit the generated files.
package durabledb
