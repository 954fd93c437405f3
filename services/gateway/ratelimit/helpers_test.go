package ratelimit

import "github.com/highgopress/highgopress/platform/config"

func configReader(m map[string]string) *config.Reader { return config.FromMap(m) }
