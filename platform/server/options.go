package server

import "time"

// Option configures a Server.
type Option func(*options)

type options struct {
	readHeaderTimeout time.Duration
	readTimeout       time.Duration
	writeTimeout      time.Duration
	idleTimeout       time.Duration
	shutdownTimeout   time.Duration
	maxHeaderBytes    int
	wrap              []func(httpHandler) httpHandler
}

func defaultOptions() options {
	return options{
		readHeaderTimeout: 5 * time.Second,
		readTimeout:       30 * time.Second,
		writeTimeout:      0, // server streams stay open; unary deadlines come from Connect timeouts
		idleTimeout:       120 * time.Second,
		shutdownTimeout:   10 * time.Second,
		maxHeaderBytes:    16 << 10,
	}
}

// WithReadHeaderTimeout bounds how long a client may take to send headers
// (slow-header clients are cut off after it).
func WithReadHeaderTimeout(d time.Duration) Option {
	return func(o *options) { o.readHeaderTimeout = d }
}

// WithReadTimeout bounds reading a whole request.
func WithReadTimeout(d time.Duration) Option { return func(o *options) { o.readTimeout = d } }

// WithWriteTimeout bounds writing a response (0: none, for server streams).
func WithWriteTimeout(d time.Duration) Option { return func(o *options) { o.writeTimeout = d } }

// WithIdleTimeout bounds idle keep-alive connections.
func WithIdleTimeout(d time.Duration) Option { return func(o *options) { o.idleTimeout = d } }

// WithShutdownTimeout bounds graceful shutdown.
func WithShutdownTimeout(d time.Duration) Option { return func(o *options) { o.shutdownTimeout = d } }

// WithMaxHeaderBytes bounds request header size.
func WithMaxHeaderBytes(n int) Option { return func(o *options) { o.maxHeaderBytes = n } }

// WithMiddleware wraps the whole handler (outermost last).
func WithMiddleware(m func(httpHandler) httpHandler) Option {
	return func(o *options) { o.wrap = append(o.wrap, m) }
}
