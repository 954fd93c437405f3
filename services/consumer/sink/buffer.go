package sink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	db "github.com/highgopress/highgopress/platform/durabledb"
)

// execBuffer is a db.DBTX that collects the generated :exec statements of a
// batch and sends them to the server as one multi-statement query (the
// connection interpolates the parameters client side), so a batch costs a
// few round trips instead of one per event. Consecutive executions of the
// same single-row "INSERT … VALUES (…) [ON DUPLICATE KEY UPDATE …]" query are
// merged into one multi-row INSERT, which MySQL applies row by row exactly
// like the separate statements. Reads flush the buffer first.
type execBuffer struct {
	tx    *sql.Tx
	sb    strings.Builder
	args  []any
	count int

	// The INSERT being merged: its generated text, split around the tuple.
	group         string
	prefix, tuple string
	suffix        string
	rows          int
}

// flushBytes bounds one multi-statement query, well below the server's
// max_allowed_packet.
const flushBytes = 1 << 20

var errBuffered = errors.New("statement buffered: no result yet")

type bufferedResult struct{}

func (bufferedResult) LastInsertId() (int64, error) { return 0, errBuffered }
func (bufferedResult) RowsAffected() (int64, error) { return 0, errBuffered }

func (b *execBuffer) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if strings.HasPrefix(query, "-- name:") {
		if i := strings.IndexByte(query, '\n'); i >= 0 {
			query = query[i+1:]
		}
	}
	query = strings.TrimRight(strings.TrimSpace(query), ";")
	b.args = append(b.args, args...)
	b.count++
	if query != b.group {
		b.endGroup()
		if prefix, tuple, suffix, ok := splitInsert(query); ok {
			b.group, b.prefix, b.tuple, b.suffix = query, prefix, tuple, suffix
			b.sb.WriteString(prefix)
			b.sb.WriteString(tuple)
			b.rows = 1
		} else {
			b.sb.WriteString(query)
			b.sb.WriteString(";\n")
		}
	} else {
		b.sb.WriteString(", ")
		b.sb.WriteString(b.tuple)
		b.rows++
	}
	if b.sb.Len() >= flushBytes {
		if err := b.Flush(ctx); err != nil {
			return nil, err
		}
	}
	return bufferedResult{}, nil
}

// Flush sends the buffered statements; the first failing one fails it.
func (b *execBuffer) Flush(ctx context.Context) error {
	if b.count == 0 {
		return nil
	}
	b.endGroup()
	_, err := b.tx.ExecContext(ctx, b.sb.String(), b.args...)
	n := b.count
	b.sb.Reset()
	b.args = b.args[:0]
	b.count = 0
	if err != nil {
		return fmt.Errorf("%d buffered statements: %w", n, err)
	}
	return nil
}

func (b *execBuffer) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	if err := b.Flush(ctx); err != nil {
		return nil, err
	}
	return b.tx.PrepareContext(ctx, query)
}

func (b *execBuffer) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if err := b.Flush(ctx); err != nil {
		return nil, err
	}
	return b.tx.QueryContext(ctx, query, args...)
}

// QueryRowContext must not be used on a non-empty buffer (it cannot return
// a flush error); the sink only reads through the transaction itself.
func (b *execBuffer) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	_ = b.Flush(ctx)
	return b.tx.QueryRowContext(ctx, query, args...)
}

var _ db.DBTX = (*execBuffer)(nil)

// endGroup closes the multi-row INSERT being merged, if any.
func (b *execBuffer) endGroup() {
	if b.group == "" {
		return
	}
	b.sb.WriteString(b.suffix)
	b.sb.WriteString(";\n")
	b.group, b.rows = "", 0
}

// splitInsert splits "INSERT … VALUES (tuple) suffix" into "INSERT … VALUES ",
// "(tuple)" and " suffix" when the tuple holds only placeholders.
func splitInsert(query string) (prefix, tuple, suffix string, ok bool) {
	if !strings.HasPrefix(strings.ToUpper(query), "INSERT") {
		return "", "", "", false
	}
	i := strings.Index(strings.ToUpper(query), "VALUES")
	if i < 0 {
		return "", "", "", false
	}
	open := strings.IndexByte(query[i:], '(')
	if open < 0 {
		return "", "", "", false
	}
	open += i
	end := strings.IndexByte(query[open:], ')')
	if end < 0 {
		return "", "", "", false
	}
	end += open
	if strings.Trim(query[open+1:end], "?, \n\t") != "" {
		return "", "", "", false
	}
	return query[:open], query[open : end+1], query[end+1:], true
}
