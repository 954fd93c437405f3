// Package rpctest runs handlers on loopback for tests and lists the three
// wire protocols every RPC is tested over.
package rpctest

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"connectrpc.com/connect"

	"github.com/highgopress/highgopress/platform/server"
)

// Protocol is one way a client reaches a service.
type Protocol struct {
	Name string
	Opts []connect.ClientOption
}

// Protocols are Connect with JSON (what curl users send), gRPC and gRPC-Web
// (binary protobuf).
var Protocols = []Protocol{
	{Name: "connect-json", Opts: []connect.ClientOption{connect.WithProtoJSON()}},
	{Name: "grpc", Opts: []connect.ClientOption{connect.WithGRPC()}},
	{Name: "grpc-web", Opts: []connect.ClientOption{connect.WithGRPCWeb()}},
}

// Serve serves h over h2c and HTTP/1.1 on a loopback port until the test
// ends, returning its base URL and an h2c client for it.
func Serve(t testing.TB, h http.Handler) (string, *http.Client) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = p
	srv.Start()
	t.Cleanup(srv.Close)
	client := server.NewH2CClient()
	t.Cleanup(client.CloseIdleConnections)
	return srv.URL, client
}
