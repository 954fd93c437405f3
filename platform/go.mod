module github.com/highgopress/highgopress/platform

go 1.26

require (
	connectrpc.com/connect v1.19.1
	connectrpc.com/grpchealth v1.5.0
	connectrpc.com/grpcreflect v1.3.0
)

require google.golang.org/protobuf v1.36.9 // indirect
