module github.com/highgopress/highgopress/services/standalone

go 1.26.7

require (
	connectrpc.com/connect v1.19.1
	connectrpc.com/grpcreflect v1.3.0
	github.com/alicebob/miniredis/v2 v2.40.0
	github.com/highgopress/highgopress/gen v0.0.0
	github.com/highgopress/highgopress/platform v0.0.0
	github.com/highgopress/highgopress/services/counter v0.0.0
	github.com/highgopress/highgopress/services/gateway v0.0.0
	github.com/redis/go-redis/v9 v9.23.0
)

require (
	connectrpc.com/grpchealth v1.5.0 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/golang-jwt/jwt/v5 v5.3.1 // indirect
	github.com/yuin/gopher-lua v1.1.1 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	google.golang.org/protobuf v1.36.11 // indirect
)

replace (
	github.com/highgopress/highgopress/gen => ../../gen
	github.com/highgopress/highgopress/platform => ../../platform
	github.com/highgopress/highgopress/services/counter => ../counter
	github.com/highgopress/highgopress/services/gateway => ../gateway
)
