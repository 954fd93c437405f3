package sink

import "testing"

func TestSplitInsert(t *testing.T) {
	p, tu, s, ok := splitInsert("INSERT INTO t (a, b) VALUES (?, ?) ON DUPLICATE KEY UPDATE a = VALUES(a)")
	if !ok || p != "INSERT INTO t (a, b) VALUES " || tu != "(?, ?)" || s != " ON DUPLICATE KEY UPDATE a = VALUES(a)" {
		t.Fatalf("%q %q %q %v", p, tu, s, ok)
	}
	for _, q := range []string{
		"UPDATE t SET a = ?",
		"INSERT INTO t (a) VALUES (1)",
		"INSERT INTO t (a) SELECT ?",
	} {
		if _, _, _, ok := splitInsert(q); ok {
			t.Errorf("%q split", q)
		}
	}
}
