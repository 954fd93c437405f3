module github.com/highgopress/highgopress/services/analytics

go 1.26.7

require (
	github.com/highgopress/highgopress/gen v0.0.0
	github.com/highgopress/highgopress/platform v0.0.0
)

replace (
	github.com/highgopress/highgopress/gen => ../../gen
	github.com/highgopress/highgopress/platform => ../../platform
)
