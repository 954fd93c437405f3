package validate

import (
	"errors"
	"strings"
	"testing"

	"github.com/highgopress/highgopress/services/counter/domain"
)

func item(ns, id string) domain.ItemRef { return domain.ItemRef{Namespace: ns, ID: id} }

func TestRules(t *testing.T) {
	ok := item("articles", "a-1")
	inc := func(mut func(*domain.Increment)) domain.Increment {
		in := domain.Increment{Item: ok, Metric: "views", Delta: 1, IdempotencyKey: "key-0001"}
		mut(&in)
		return in
	}
	many := make([]domain.ItemRef, 501)
	for i := range many {
		many[i] = ok
	}
	users := make([]string, 501)
	for i := range users {
		users[i] = "u"
	}
	cases := []struct {
		name string
		err  error
		want error  // sentinel
		msg  string // substring of the message
	}{
		{"like ok", Like("u1", ok), nil, ""},
		{"like max lengths", Like(strings.Repeat("U", 64), item(strings.Repeat("n", 32), strings.Repeat("I", 128))), nil, ""},
		{"like all id chars", Like("Az09_.:-", item("az09_-", "Az09_.:-")), nil, ""},
		{"no actor", Like("", ok), domain.ErrUnauthenticated, "acting user"},
		{"bad actor", Like("u 1", ok), domain.ErrInvalid, "actor"},
		{"empty namespace", Like("u1", item("", "x")), domain.ErrInvalid, "item.namespace: required"},
		{"long namespace", Like("u1", item(strings.Repeat("n", 33), "x")), domain.ErrInvalid, "item.namespace: must be 1-32"},
		{"namespace brace", Like("u1", item("a{b", "x")), domain.ErrInvalid, "item.namespace: character '{'"},
		{"namespace upper", Like("u1", item("Art", "x")), domain.ErrInvalid, "item.namespace"},
		{"namespace colon", Like("u1", item("a:b", "x")), domain.ErrInvalid, "item.namespace"},
		{"empty id", Like("u1", item("a", "")), domain.ErrInvalid, "item.id: required"},
		{"long id", Like("u1", item("a", strings.Repeat("i", 129))), domain.ErrInvalid, "item.id: must be 1-128"},
		{"id glob", Like("u1", item("a", "x*")), domain.ErrInvalid, "item.id: character '*'"},
		{"id space", Like("u1", item("a", "x y")), domain.ErrInvalid, "item.id"},
		{"id newline", Like("u1", item("a", "x\n")), domain.ErrInvalid, "item.id"},
		{"id unicode", Like("u1", item("a", "é")), domain.ErrInvalid, "item.id"},
		{"incr ok", Increment("u1", inc(func(*domain.Increment) {})), nil, ""},
		{"incr max delta", Increment("u1", inc(func(in *domain.Increment) { in.Delta = -1_000_000 })), nil, ""},
		{"incr zero delta", Increment("u1", inc(func(in *domain.Increment) { in.Delta = 0 })), domain.ErrInvalid, "delta: must not be zero"},
		{"incr big delta", Increment("u1", inc(func(in *domain.Increment) { in.Delta = 1_000_001 })), domain.ErrInvalid, "delta: must be between"},
		{"incr likes", Increment("u1", inc(func(in *domain.Increment) { in.Metric = "likes" })), domain.ErrInvalid, "metric: \"likes\" is reserved"},
		{"incr _l", Increment("u1", inc(func(in *domain.Increment) { in.Metric = "_l" })), domain.ErrInvalid, "metric: \"_l\" is reserved: metric names must not start with '_'"},
		{"incr metric dash", Increment("u1", inc(func(in *domain.Increment) { in.Metric = "a-b" })), domain.ErrInvalid, "metric"},
		{"incr metric empty", Increment("u1", inc(func(in *domain.Increment) { in.Metric = "" })), domain.ErrInvalid, "metric: required"},
		{"incr no key", Increment("u1", inc(func(in *domain.Increment) { in.IdempotencyKey = "" })), domain.ErrInvalid, "idempotency_key: required"},
		{"incr short key", Increment("u1", inc(func(in *domain.Increment) { in.IdempotencyKey = "1234567" })), domain.ErrInvalid, "idempotency_key: must be 8-128"},
		{"incr key bracket", Increment("u1", inc(func(in *domain.Increment) { in.IdempotencyKey = "12345678[" })), domain.ErrInvalid, "idempotency_key"},
		{"incr no actor", Increment("", inc(func(*domain.Increment) {})), domain.ErrUnauthenticated, ""},
		{"follow ok", Follow("u1", "u2"), nil, ""},
		{"follow self", Follow("u1", "u1"), domain.ErrSelfFollow, "themselves"},
		{"follow empty", Follow("u1", ""), domain.ErrInvalid, "user_id: required"},
		{"follow long", Follow("u1", strings.Repeat("u", 65)), domain.ErrInvalid, "user_id: must be 1-64"},
		{"follow no actor", Follow("", "u2"), domain.ErrUnauthenticated, ""},
		{"counts ok anonymous", GetCounts("", []domain.ItemRef{ok}), nil, ""},
		{"counts 500", GetCounts("u1", many[:500]), nil, ""},
		{"counts 501", GetCounts("u1", many), domain.ErrInvalid, "items: at most 500 items per request, got 501"},
		{"counts none", GetCounts("u1", nil), domain.ErrInvalid, "items: at least one item"},
		{"counts bad item", GetCounts("", []domain.ItemRef{ok, item("a", "?")}), domain.ErrInvalid, "items[1].id"},
		{"stats ok", GetUserStats("", users[:500]), nil, ""},
		{"stats 501", GetUserStats("", users), domain.ErrInvalid, "user_ids: at most 500 user ids per request, got 501"},
		{"stats bad", GetUserStats("", []string{"ok", "a]"}), domain.ErrInvalid, "user_ids[1]"},
		{"stats bad viewer", GetUserStats("v{", []string{"ok"}), domain.ErrInvalid, "actor"},
	}
	for _, c := range cases {
		if c.want == nil {
			if c.err != nil {
				t.Errorf("%s: unexpected error %v", c.name, c.err)
			}
			continue
		}
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: err = %v; want %v", c.name, c.err, c.want)
			continue
		}
		if !strings.Contains(c.err.Error(), c.msg) {
			t.Errorf("%s: message %q does not contain %q", c.name, c.err.Error(), c.msg)
		}
	}
}

// FuzzNames checks that no accepted name can carry a character that would
// change the meaning of a Redis key or pattern.
func FuzzNames(f *testing.F) {
	for _, s := range []string{"a", "x{y}", "a*b", "a b", "é", "", "a:b", strings.Repeat("z", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for name, err := range map[string]error{
			"namespace": Namespace("f", s),
			"item":      ItemID("f", s),
			"user":      UserID("f", s),
			"metric":    Metric("f", s),
			"key":       IdempotencyKey("f", s),
		} {
			if err != nil {
				if !errors.Is(err, domain.ErrInvalid) {
					t.Fatalf("%s(%q): error %v is not ErrInvalid", name, s, err)
				}
				continue
			}
			if s == "" || strings.ContainsAny(s, "{}*?[]\\ \t\r\n\x00") {
				t.Fatalf("%s accepted %q", name, s)
			}
		}
	})
}

// TestMessagesNameTheCharacter: the offending character is named as the
// client wrote it — the whole rune at its byte offset, escaped when
// unprintable — not as the first byte of its UTF-8 encoding read as
// Latin-1 ("character 'Ã' at offset 1" for "héllo").
func TestMessagesNameTheCharacter(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{Like("u1", item("a", "héllo")), `item.id: character 'é' (U+00E9) at offset 1 is not allowed: must be 1-128 characters of [A-Za-z0-9_.:-]`},
		{Like("u1", item("artículo", "x")), `item.namespace: character 'í' (U+00ED) at offset 3 is not allowed`},
		{Follow("u1", "日本"), `user_id: character '日' (U+65E5) at offset 0 is not allowed`},
		{Like("u1", item("a", "x\x00")), `item.id: character '\x00' (U+0000) at offset 1 is not allowed`},
		{Like("u1", item("a", "x\u202ey")), `item.id: character '\u202e' (U+202E) at offset 1 is not allowed`},
		{Like("u1", item("a", "x\xff")), `item.id: byte 0xff (not UTF-8) at offset 1 is not allowed`},
		{GetUserStats("", []string{"ok", "b\tc"}), `user_ids[1]: character '\t' (U+0009) at offset 1 is not allowed`},
		{Like("u1", item("a", strings.Repeat("é", 65))), `item.id: must be 1-128 characters of [A-Za-z0-9_.:-], got 130 bytes`},
	}
	for _, c := range cases {
		if !errors.Is(c.err, domain.ErrInvalid) {
			t.Errorf("err = %v; want ErrInvalid", c.err)
			continue
		}
		if !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("message %q does not contain %q", c.err.Error(), c.want)
		}
	}
}
