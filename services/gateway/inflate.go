package gateway

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"connectrpc.com/connect"
)

// DefaultMaxMessageBytes is the largest request message, after
// decompression, the gateway lets through (HGP_MAX_MESSAGE_BYTES, the
// variable the backends read for the same limit).
const DefaultMaxMessageBytes = 256 << 10

// errInflated is a compressed request message that inflates past the limit.
var errInflated = errors.New("inflates past the limit")

// checkCompressed looks at a buffered request body that the client
// compressed with gzip (Connect unary: Content-Encoding; gRPC and gRPC-Web:
// Grpc-Encoding; Connect streaming: Connect-Content-Encoding, with each
// compressed envelope checked) and refuses it when a message would inflate
// past maxMsg, or is not valid gzip. The check streams into a discarding
// counter and stops at maxMsg+1 bytes, so a compression bomb costs the
// gateway at most maxMsg bytes of inflating and no allocation of its size;
// the body itself is forwarded unchanged. Other encodings are left to the
// backend (which answers Unimplemented).
func checkCompressed(r *http.Request, body []byte, maxMsg int64) (connect.Code, string, bool) {
	ct := r.Header.Get("Content-Type")
	var enveloped bool
	var enc string
	switch {
	case strings.HasPrefix(ct, "application/grpc"): // gRPC and gRPC-Web
		enveloped, enc = true, r.Header.Get("Grpc-Encoding")
	case strings.HasPrefix(ct, "application/connect+"):
		enveloped, enc = true, r.Header.Get("Connect-Content-Encoding")
	default:
		enc = r.Header.Get("Content-Encoding")
	}
	if !strings.EqualFold(strings.TrimSpace(enc), "gzip") || len(body) == 0 {
		return 0, "", true
	}
	if !enveloped {
		return verdict(inflatedWithin(body, maxMsg), maxMsg)
	}
	for rest := body; len(rest) >= 5; {
		flags, n := rest[0], binary.BigEndian.Uint32(rest[1:5])
		if uint64(n) > uint64(len(rest)-5) {
			break // truncated framing: the backend reports it
		}
		payload := rest[5 : 5+n]
		rest = rest[5+n:]
		if flags&0x01 == 0 || flags&0x02 != 0 { // uncompressed, or a Connect end-stream frame
			continue
		}
		if code, msg, ok := verdict(inflatedWithin(payload, maxMsg), maxMsg); !ok {
			return code, msg, false
		}
	}
	return 0, "", true
}

func verdict(err error, maxMsg int64) (connect.Code, string, bool) {
	switch {
	case err == nil:
		return 0, "", true
	case errors.Is(err, errInflated):
		return connect.CodeResourceExhausted, fmt.Sprintf("decompressed request message exceeds the limit of %d bytes", maxMsg), false
	default:
		return connect.CodeInvalidArgument, "request message is not valid gzip", false
	}
}

var gzipReaders sync.Pool

// inflatedWithin inflates data into a discarding counter, stopping after
// maxMsg+1 bytes.
func inflatedWithin(data []byte, maxMsg int64) error {
	src := bytes.NewReader(data)
	zr, _ := gzipReaders.Get().(*gzip.Reader)
	var err error
	if zr == nil {
		zr, err = gzip.NewReader(src)
	} else {
		err = zr.Reset(src)
	}
	if err != nil {
		return fmt.Errorf("gzip header: %w", err)
	}
	defer gzipReaders.Put(zr)
	n, err := io.CopyN(io.Discard, zr, maxMsg+1)
	switch {
	case n > maxMsg:
		return errInflated
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return fmt.Errorf("gzip data: %w", err)
	}
	return nil
}
