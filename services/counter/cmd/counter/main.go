// Command counter runs the counter service (see package counter).
//
//	counter             run
//	counter reconcile   compare Redis with MySQL (HGP_MYSQL_DSN) once, repair, exit
package main

import (
	"github.com/highgopress/highgopress/platform/bootstrap"
	"github.com/highgopress/highgopress/services/counter"
)

func main() {
	bootstrap.MainWith(counter.Name, counter.Build, map[string]bootstrap.CommandFunc{
		"reconcile": counter.Reconcile,
	})
}
