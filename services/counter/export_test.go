package counter

// InflatedBytes returns the number of bytes the gzip decompressor of c
// produced so far (for the compression-bomb tests).
func (c *Counter) InflatedBytes() int64 { return c.inflated.Load() }
