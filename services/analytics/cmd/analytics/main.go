// Command analytics runs the analytics service (see package analytics).
//
//	analytics           run
//	analytics rebuild   recompute every window from Kafka's earliest offset, exit
package main

import (
	"github.com/highgopress/highgopress/platform/bootstrap"
	"github.com/highgopress/highgopress/services/analytics"
)

func main() {
	bootstrap.MainWith(analytics.Name, analytics.Build, map[string]bootstrap.CommandFunc{
		"rebuild": analytics.Rebuild,
	})
}
