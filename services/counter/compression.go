package counter

import (
	"compress/gzip"
	"fmt"
	"io"
	"sync/atomic"

	"connectrpc.com/connect"
)

// gzipHandlerOptions replace connect-go's gzip support by one whose
// decompressor stops inflating after maxMessageBytes+1 bytes.
//
// connect-go reads at most ReadMaxBytes+1 bytes from the decompressor, but
// to report the message's size it then drains the rest of the stream, so a
// 20 KB gzip body of zeros used to be inflated to 20 MB (and a 64 KB one to
// 64 MiB) before being refused. With this decompressor the drain fails at
// once and connect-go answers ResourceExhausted ("message is larger than
// configured max ..."). inflated, if not nil, counts every byte inflated.
func gzipHandlerOptions(maxMessageBytes int, inflated *atomic.Int64) connect.HandlerOption {
	limit := int64(maxMessageBytes) + 1
	return connect.WithHandlerOptions(
		connect.WithCompression("gzip", nil, nil), // drop the default, so gzip is listed once
		connect.WithCompression("gzip",
			func() connect.Decompressor {
				return &limitedGzip{limit: limit, max: maxMessageBytes, inflated: inflated}
			},
			func() connect.Compressor { return gzip.NewWriter(io.Discard) },
		),
	)
}

// limitedGzip is a gzip reader that produces at most limit bytes per
// stream; reading past them fails.
type limitedGzip struct {
	zr       gzip.Reader
	limit    int64
	max      int
	produced int64
	inflated *atomic.Int64
}

// Read implements connect.Decompressor.
func (d *limitedGzip) Read(p []byte) (int, error) {
	rest := d.limit - d.produced
	if rest <= 0 {
		return 0, fmt.Errorf("gzip: decompressed message exceeds the limit of %d bytes", d.max)
	}
	if int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := d.zr.Read(p)
	d.produced += int64(n)
	if d.inflated != nil {
		d.inflated.Add(int64(n))
	}
	return n, err
}

// Close implements connect.Decompressor.
func (d *limitedGzip) Close() error { return d.zr.Close() }

// Reset implements connect.Decompressor: it starts a new stream, with a new
// allowance.
func (d *limitedGzip) Reset(r io.Reader) error {
	d.produced = 0
	return d.zr.Reset(r)
}
