package handler

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// CodecOptions replaces connect-go's protobuf and JSON codecs with the same
// encodings whose decoding errors speak the API's language: the message and
// field as the client wrote them, the offending value (escaped and
// shortened) and the rule, at a line and column for JSON — never Go type
// names ("unmarshal into *counterv1.LikeRequest") or parser internals.
// connect-go answers them with InvalidArgument, prefixed "unmarshal
// message: ".
func CodecOptions() connect.HandlerOption {
	return connect.WithHandlerOptions(
		connect.WithCodec(protoCodec{}),
		connect.WithCodec(jsonCodec{name: "json"}),
		connect.WithCodec(jsonCodec{name: "json; charset=utf-8"}),
	)
}

// protoCodec is connect-go's binary protobuf codec with API-level errors.
type protoCodec struct{}

func (protoCodec) Name() string { return "proto" }

func (protoCodec) Marshal(m any) ([]byte, error) {
	pm, err := protoMessage(m)
	if err != nil {
		return nil, err
	}
	return proto.Marshal(pm)
}

func (protoCodec) MarshalAppend(dst []byte, m any) ([]byte, error) {
	pm, err := protoMessage(m)
	if err != nil {
		return nil, err
	}
	return proto.MarshalOptions{}.MarshalAppend(dst, pm)
}

func (protoCodec) MarshalStable(m any) ([]byte, error) {
	pm, err := protoMessage(m)
	if err != nil {
		return nil, err
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(pm)
}

func (protoCodec) IsBinary() bool { return true }

func (protoCodec) Unmarshal(data []byte, m any) error {
	pm, err := protoMessage(m)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(data, pm); err != nil {
		return fmt.Errorf("request message is not a valid %s in protobuf encoding: %s",
			pm.ProtoReflect().Descriptor().FullName(), shortValue(trimProtoPrefix(err.Error())))
	}
	return nil
}

// jsonCodec is connect-go's protobuf JSON codec (unknown fields ignored)
// with API-level errors.
type jsonCodec struct{ name string }

func (c jsonCodec) Name() string { return c.name }

func (jsonCodec) Marshal(m any) ([]byte, error) {
	pm, err := protoMessage(m)
	if err != nil {
		return nil, err
	}
	return protojson.MarshalOptions{}.Marshal(pm)
}

func (jsonCodec) MarshalAppend(dst []byte, m any) ([]byte, error) {
	pm, err := protoMessage(m)
	if err != nil {
		return nil, err
	}
	return protojson.MarshalOptions{}.MarshalAppend(dst, pm)
}

func (c jsonCodec) MarshalStable(m any) ([]byte, error) { return c.Marshal(m) }

func (jsonCodec) IsBinary() bool { return false }

func (jsonCodec) Unmarshal(data []byte, m any) error {
	pm, err := protoMessage(m)
	if err != nil {
		return err
	}
	name := pm.ProtoReflect().Descriptor().FullName()
	if len(data) == 0 {
		return fmt.Errorf("request message is empty: a %s is a JSON object (at least {})", name)
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, pm); err != nil {
		return fmt.Errorf("request message is not a valid %s in JSON%s", name, jsonProblem(err))
	}
	return nil
}

func protoMessage(m any) (proto.Message, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", m)
	}
	return pm, nil
}

var (
	// The protobuf module prefixes its errors with "proto:" and, at
	// random, a space or a no-break space (so that nobody relies on the
	// text; these messages are for people).
	protoPrefix = regexp.MustCompile(`^proto:[ \x{00a0}]+`)
	// "(line 1:61): ..." or "syntax error (line 1:9): ..." after "proto: ".
	jsonPosition = regexp.MustCompile(`^(?:syntax error )?\(line (\d+):(\d+)\): (.*)$`)
	// protojson names the kind and the field's JSON name.
	jsonBadValue = regexp.MustCompile(`^invalid value for (\w+) field (\w+): (.*)$`)
)

func trimProtoPrefix(msg string) string { return protoPrefix.ReplaceAllString(msg, "") }

// jsonProblem turns a protojson error into ": <where>: <what>" in the
// client's terms.
func jsonProblem(err error) string {
	if errors.Is(err, io.ErrUnexpectedEOF) || strings.HasSuffix(err.Error(), "unexpected EOF") {
		return ": the JSON ends too early (truncated or unbalanced)"
	}
	msg := trimProtoPrefix(err.Error())
	where := ""
	if m := jsonPosition.FindStringSubmatch(msg); m != nil {
		where = fmt.Sprintf(" at line %s, column %s", m[1], m[2])
		msg = m[3]
	}
	switch {
	case jsonBadValue.MatchString(msg):
		m := jsonBadValue.FindStringSubmatch(msg)
		msg = fmt.Sprintf("field %s: %s is not %s", m[2], shortValue(m[3]), kindRule(m[1]))
	case strings.HasPrefix(msg, "unexpected token "):
		msg = "unexpected " + shortValue(strings.TrimPrefix(msg, "unexpected token "))
	case msg == "invalid UTF-8 in string":
		msg = "a string is not valid UTF-8"
	default:
		msg = shortValue(msg)
	}
	return where + ": " + msg
}

// kindRule describes what a protobuf JSON field of a kind accepts.
func kindRule(kind string) string {
	switch kind {
	case "int64", "sint64", "sfixed64":
		return "a 64-bit integer (a JSON number or a string of digits)"
	case "uint64", "fixed64":
		return "an unsigned 64-bit integer (a JSON number or a string of digits)"
	case "int32", "sint32", "sfixed32":
		return "a 32-bit integer"
	case "uint32", "fixed32":
		return "an unsigned 32-bit integer"
	case "string":
		return "a JSON string"
	case "bool":
		return "true or false"
	case "message":
		return "a JSON object"
	case "enum":
		return "a known enum name or number"
	case "bytes":
		return "base64-encoded bytes in a JSON string"
	case "float", "double":
		return "a number"
	}
	return "a valid " + kind
}

// maxValueBytes bounds how much of an offending value a message repeats.
const maxValueBytes = 64

// shortValue makes s safe to repeat in a message: at most maxValueBytes
// (cut at a rune boundary, marked with "…"), invalid UTF-8 and unprintable
// characters escaped as Go would quote them.
func shortValue(s string) string {
	cut := false
	if len(s) > maxValueBytes {
		n := maxValueBytes
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s, cut = s[:n], true
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsPrint(r):
			b.WriteRune(r)
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	if cut {
		b.WriteString("…")
	}
	return b.String()
}

// CheckTimeoutHeader answers a Connect request whose Connect-Timeout-Ms
// header is not 1-10 decimal digits with InvalidArgument naming the header
// and the value, before connect-go parses it (its own message is
// "parse timeout: strconv.ParseInt: parsing ..."). gRPC requests, which
// carry grpc-timeout instead, pass unchanged.
func CheckTimeoutHeader(next http.Handler) http.Handler {
	ew := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v, ok := r.Header["Connect-Timeout-Ms"]; ok && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			if len(v) != 1 || !validTimeoutMs(v[0]) {
				got := strings.Join(v, ", ")
				if len(got) > maxValueBytes {
					got = got[:maxValueBytes] + "…"
				}
				_ = ew.Write(w, r, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(
					"header Connect-Timeout-Ms: %q is not a timeout: must be 1-10 decimal digits (milliseconds)", got)))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func validTimeoutMs(v string) bool {
	if len(v) == 0 || len(v) > 10 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	return true
}
