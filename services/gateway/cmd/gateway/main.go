// Command gateway runs the public HighGoPress gateway.
package main

import (
	"github.com/highgopress/highgopress/platform/bootstrap"
	"github.com/highgopress/highgopress/services/gateway"
)

func main() { bootstrap.Main("gateway", gateway.Build) }
