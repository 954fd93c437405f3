module github.com/highgopress/highgopress/loadtest

go 1.26.7

require github.com/highgopress/highgopress/services/gateway v0.0.0

require (
	connectrpc.com/connect v1.19.1 // indirect
	connectrpc.com/cors v0.1.0 // indirect
	connectrpc.com/grpchealth v1.5.0 // indirect
	connectrpc.com/grpcreflect v1.3.0 // indirect
	github.com/golang-jwt/jwt/v5 v5.3.1 // indirect
	github.com/highgopress/highgopress/gen v0.0.0 // indirect
	github.com/highgopress/highgopress/platform v0.0.0 // indirect
	github.com/rs/cors v1.11.1 // indirect
	google.golang.org/protobuf v1.36.11 // indirect
)

replace (
	github.com/highgopress/highgopress/gen => ../gen
	github.com/highgopress/highgopress/platform => ../platform
	github.com/highgopress/highgopress/services/gateway => ../services/gateway
)
