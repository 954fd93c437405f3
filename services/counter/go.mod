module github.com/highgopress/highgopress/services/counter

go 1.26

require (
	github.com/highgopress/highgopress/gen v0.0.0
	github.com/highgopress/highgopress/platform v0.0.0
)

require (
	connectrpc.com/connect v1.19.1 // indirect
	connectrpc.com/grpchealth v1.5.0 // indirect
	connectrpc.com/grpcreflect v1.3.0 // indirect
	google.golang.org/protobuf v1.36.11 // indirect
)

replace (
	github.com/highgopress/highgopress/gen => ../../gen
	github.com/highgopress/highgopress/platform => ../../platform
)
