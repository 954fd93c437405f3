// Command counter runs the counter service (see package counter).
package main

import (
	"github.com/highgopress/highgopress/platform/bootstrap"
	"github.com/highgopress/highgopress/services/counter"
)

func main() { bootstrap.Main(counter.Name, counter.Build) }
