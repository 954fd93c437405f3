package auth

// CachedTokens returns how many verified tokens v remembers.
func CachedTokens(v *Verifier) int { return v.cache.len() }
