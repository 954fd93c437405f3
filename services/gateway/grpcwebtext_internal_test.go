package gateway

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"net/http/httptest"
	"testing"
	"testing/iotest"
)

// FuzzBase64Body: the gRPC-Web text request decoder never panics, and for
// any bytes split into any padded chunks it returns exactly those bytes,
// whatever the read sizes.
func FuzzBase64Body(f *testing.F) {
	f.Add([]byte("hello, world"), uint8(5), []byte(nil))
	f.Add([]byte{0, 0, 0, 0, 3, 1, 2, 3}, uint8(1), []byte("QQ=="))
	f.Add([]byte(""), uint8(0), []byte("!!!="))
	f.Fuzz(func(t *testing.T, data []byte, cut uint8, garbage []byte) {
		// Arbitrary input: no panic, an error or some bytes.
		_, _ = io.ReadAll(&base64Body{src: io.NopCloser(iotest.OneByteReader(bytes.NewReader(garbage)))})

		k := min(int(cut), len(data))
		enc := base64.StdEncoding.EncodeToString(data[:k]) + base64.StdEncoding.EncodeToString(data[k:])
		got, err := io.ReadAll(&base64Body{src: io.NopCloser(iotest.HalfReader(bytes.NewReader([]byte(enc))))})
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("decode(%q) = %x, %v; want %x", enc, got, err, data)
		}
		if k > 0 {
			_, err := io.ReadAll(&base64Body{src: io.NopCloser(bytes.NewReader([]byte(enc[:len(enc)-1])))})
			if len(enc)%4 == 0 && !errors.Is(err, errInvalidBase64) {
				t.Fatalf("truncated %q: %v", enc[:len(enc)-1], err)
			}
		}
	})
}

// TestTextWriterChunks: whatever the write and flush pattern, the text
// response decodes (chunk by chunk, as the grpc-web client does) to the
// bytes written.
func TestTextWriterChunks(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 40)
	for _, sizes := range [][]int{{1}, {2}, {3}, {5, 7}, {1, 1, 1, 500}, {len(data)}} {
		rec := httptest.NewRecorder()
		rec.Header().Set("Content-Type", "application/grpc-web+proto")
		tw := &textWriter{ResponseWriter: rec}
		for i, rest := 0, data; len(rest) > 0; i++ {
			n := min(sizes[i%len(sizes)], len(rest))
			_, _ = tw.Write(rest[:n])
			if i%3 == 0 {
				tw.Flush()
			}
			rest = rest[n:]
		}
		tw.finish()
		if ct := rec.Header().Get("Content-Type"); ct != "application/grpc-web-text+proto" {
			t.Fatalf("content type %q", ct)
		}
		got, err := decodeBase64Chunks(rec.Body.Bytes())
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("sizes %v: %v, %d bytes back", sizes, err, len(got))
		}
	}
}
