package main

import (
	_ "github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	_ "github.com/highgopress/highgopress/platform/bootstrap"
)

func main() {}
