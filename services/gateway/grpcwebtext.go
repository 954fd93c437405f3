package gateway

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// gRPC-Web text mode (application/grpc-web-text, the default of the
// grpc-web JavaScript client) is gRPC-Web with both bodies base64-encoded.
// connect-go does not serve it, so the gateway translates at its edge:
// the request body is decoded as it is read (so the body limit, the
// compression checks and everything after them see the binary
// application/grpc-web body), and the response is encoded as it is written
// and flushed (server streams keep flowing; each flush ends its base64
// chunk, padding included, which the gRPC-Web protocol allows).
const (
	grpcWebPrefix     = "application/grpc-web"
	grpcWebTextPrefix = "application/grpc-web-text"
)

// errInvalidBase64 is a gRPC-Web text request body that is not base64.
var errInvalidBase64 = errors.New("gRPC-Web text request body is not valid base64")

// grpcWebText wraps h so that it serves gRPC-Web text requests as binary
// gRPC-Web ones. Other requests pass unchanged.
func grpcWebText(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ct := r.Header.Get("Content-Type")
		if r.Method != http.MethodPost || !strings.HasPrefix(ct, grpcWebTextPrefix) {
			h.ServeHTTP(w, r)
			return
		}
		in := r.WithContext(r.Context())
		in.Header = r.Header.Clone()
		in.Header.Set("Content-Type", grpcWebPrefix+strings.TrimPrefix(ct, grpcWebTextPrefix))
		in.Header.Del("Content-Length")
		in.ContentLength = -1
		if r.Body != nil && r.Body != http.NoBody {
			in.Body = &base64Body{src: r.Body}
		}
		tw := &textWriter{ResponseWriter: w}
		h.ServeHTTP(tw, in)
		tw.finish()
	})
}

// base64Body decodes a base64 stream, which may be several padded chunks
// one after the other. Errors of the underlying body (limits, timeouts,
// cancellation) are passed on unchanged.
type base64Body struct {
	src   io.ReadCloser
	buf   [4096]byte
	carry int    // undecoded bytes at the start of buf (< 4)
	out   []byte // decoded bytes not yet returned
	err   error
}

func (b *base64Body) Read(p []byte) (int, error) {
	for len(b.out) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		n, err := b.src.Read(b.buf[b.carry:])
		total := b.carry + n
		whole := total / 4 * 4
		if whole > 0 {
			dec, derr := decodeBase64Chunks(b.buf[:whole])
			if derr != nil {
				b.err = derr
				return 0, derr
			}
			b.out = dec
		}
		b.carry = copy(b.buf[:], b.buf[whole:total])
		switch {
		case errors.Is(err, io.EOF) && b.carry != 0:
			b.err = fmt.Errorf("%w: %d trailing characters", errInvalidBase64, b.carry)
		case err != nil:
			b.err = err
		}
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	return n, nil
}

func (b *base64Body) Close() error { return b.src.Close() }

// decodeBase64Chunks decodes whole 4-character quanta of standard base64,
// where a padded quantum may be followed by more data (separately encoded
// chunks).
func decodeBase64Chunks(s []byte) ([]byte, error) {
	out := make([]byte, 0, len(s)/4*3)
	for len(s) > 0 {
		end := len(s)
		if i := bytes.IndexByte(s, '='); i >= 0 {
			end = (i/4 + 1) * 4
		}
		dst := make([]byte, base64.StdEncoding.DecodedLen(end))
		n, err := base64.StdEncoding.Decode(dst, s[:end])
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errInvalidBase64, err)
		}
		out = append(out, dst[:n]...)
		s = s[end:]
	}
	return out, nil
}

// textWriter encodes a gRPC-Web response to gRPC-Web text: the content
// type becomes application/grpc-web-text (with the same suffix) and the
// body base64, three bytes at a time as they are written, the remainder
// (with padding) at each flush and at the end. Responses that are not
// gRPC-Web pass through unchanged.
type textWriter struct {
	http.ResponseWriter
	wroteHeader bool
	encode      bool
	pending     []byte // < 3 bytes not yet encoded
	enc         []byte
}

func (t *textWriter) WriteHeader(code int) {
	if t.wroteHeader {
		return
	}
	t.wroteHeader = true
	h := t.ResponseWriter.Header()
	if ct := h.Get("Content-Type"); strings.HasPrefix(ct, grpcWebPrefix) && !strings.HasPrefix(ct, grpcWebTextPrefix) {
		h.Set("Content-Type", grpcWebTextPrefix+strings.TrimPrefix(ct, grpcWebPrefix))
		h.Del("Content-Length")
		t.encode = true
	}
	t.ResponseWriter.WriteHeader(code)
}

func (t *textWriter) Write(p []byte) (int, error) {
	if !t.wroteHeader {
		t.WriteHeader(http.StatusOK)
	}
	if !t.encode {
		return t.ResponseWriter.Write(p)
	}
	n := len(p)
	if len(t.pending) > 0 {
		k := min(3-len(t.pending), len(p))
		t.pending = append(t.pending, p[:k]...)
		p = p[k:]
		if len(t.pending) < 3 {
			return n, nil
		}
		if err := t.emit(t.pending); err != nil {
			return 0, err
		}
		t.pending = t.pending[:0]
	}
	whole := len(p) / 3 * 3
	if whole > 0 {
		if err := t.emit(p[:whole]); err != nil {
			return 0, err
		}
	}
	t.pending = append(t.pending, p[whole:]...)
	return n, nil
}

func (t *textWriter) emit(p []byte) error {
	t.enc = base64.StdEncoding.AppendEncode(t.enc[:0], p)
	_, err := t.ResponseWriter.Write(t.enc)
	return err
}

// drain encodes the pending bytes, padded.
func (t *textWriter) drain() error {
	if !t.encode || len(t.pending) == 0 {
		return nil
	}
	err := t.emit(t.pending)
	t.pending = t.pending[:0]
	return err
}

// Flush implements http.Flusher (ReverseProxy flushes server streams after
// every write).
func (t *textWriter) Flush() {
	if !t.wroteHeader {
		t.WriteHeader(http.StatusOK)
	}
	_ = t.drain()
	_ = http.NewResponseController(t.ResponseWriter).Flush()
}

// Unwrap gives http.ResponseController the underlying writer.
func (t *textWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }

func (t *textWriter) finish() { _ = t.drain() }
