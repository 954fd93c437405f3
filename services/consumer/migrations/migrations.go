// Package migrations holds the consumer's versioned MySQL schema (embedded
// golang-migrate files, also read by sqlc) and applies it.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"log/slog"

	"github.com/go-sql-driver/mysql"
	"github.com/golang-migrate/migrate/v4"
	migratemysql "github.com/golang-migrate/migrate/v4/database/mysql"
	"github.com/golang-migrate/migrate/v4/source/iofs"
)

//go:embed sql/*.sql
var files embed.FS

// Up applies every pending migration to the database of dsn and returns
// the resulting schema version. It is safe to run concurrently from several
// instances (the migration runs under a MySQL named lock).
func Up(ctx context.Context, logger *slog.Logger, dsn string) (uint, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return 0, fmt.Errorf("migrate: parse dsn: %w", err)
	}
	cfg.MultiStatements = true
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	conn := sql.OpenDB(connector)
	defer conn.Close()
	if err := conn.PingContext(ctx); err != nil {
		return 0, fmt.Errorf("migrate: connect: %w", err)
	}
	drv, err := migratemysql.WithInstance(conn, &migratemysql.Config{DatabaseName: cfg.DBName})
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	src, err := iofs.New(files, "sql")
	if err != nil {
		return 0, fmt.Errorf("migrate: source: %w", err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "mysql", drv)
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	defer m.Close()
	if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return 0, fmt.Errorf("migrate: up: %w", err)
	}
	v, dirty, err := m.Version()
	if err != nil {
		return 0, fmt.Errorf("migrate: version: %w", err)
	}
	if dirty {
		return v, fmt.Errorf("migrate: schema version %d is dirty (a migration failed half-way; fix it by hand)", v)
	}
	logger.Info("schema migrated", "version", v)
	return v, nil
}
