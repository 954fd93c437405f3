module github.com/highgopress/highgopress/services/standalone

go 1.26.7

require (
	github.com/alicebob/miniredis/v2 v2.40.0
	github.com/highgopress/highgopress/platform v0.0.0
	github.com/highgopress/highgopress/services/counter v0.0.0
	github.com/highgopress/highgopress/services/gateway v0.0.0
)

require (
	connectrpc.com/connect v1.19.1 // indirect
	connectrpc.com/grpchealth v1.5.0 // indirect
	connectrpc.com/grpcreflect v1.3.0 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/dgryski/go-rendezvous v0.0.0-20200823014737-9f7001d12a5f // indirect
	github.com/golang-jwt/jwt/v5 v5.3.1 // indirect
	github.com/highgopress/highgopress/gen v0.0.0 // indirect
	github.com/redis/go-redis/v9 v9.18.0 // indirect
	github.com/yuin/gopher-lua v1.1.1 // indirect
	go.uber.org/atomic v1.11.0 // indirect
	google.golang.org/protobuf v1.36.11 // indirect
)

replace (
	github.com/highgopress/highgopress/gen => ../../gen
	github.com/highgopress/highgopress/platform => ../../platform
	github.com/highgopress/highgopress/services/counter => ../counter
	github.com/highgopress/highgopress/services/gateway => ../gateway
)
