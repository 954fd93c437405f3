package server

import (
	"net"
	"net/http"
	"time"
)

// NewH2CClient returns an HTTP client that speaks cleartext HTTP/2 (h2c) with
// prior knowledge, reusing connections: what services use to call each other
// over Connect or gRPC.
func NewH2CClient() *http.Client {
	return &http.Client{Transport: NewH2CTransport()}
}

// NewH2CTransport returns the transport behind NewH2CClient.
func NewH2CTransport() *http.Transport {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Transport{
		Protocols: p,
		DialContext: (&net.Dialer{
			Timeout:   2 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		HTTP2: &http.HTTP2Config{
			PingTimeout:     5 * time.Second,
			SendPingTimeout: 15 * time.Second,
		},
	}
}
