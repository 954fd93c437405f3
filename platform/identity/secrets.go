package identity

import (
	"fmt"

	"github.com/highgopress/highgopress/platform/config"
)

// SecretsFrom reads the shared secret (HGP_IDENTITY_SECRET, required) and
// the secrets still accepted while it is rotated
// (HGP_IDENTITY_SECRET_PREVIOUS, comma list, optional), checking their
// length; problems are recorded on r.
func SecretsFrom(r *config.Reader) (secret []byte, previous [][]byte) {
	if s := r.Required("HGP_IDENTITY_SECRET"); s != "" {
		if len(s) < MinSecretLen {
			r.Check("HGP_IDENTITY_SECRET", fmt.Errorf("must be at least %d bytes, got %d", MinSecretLen, len(s)))
		}
		secret = []byte(s)
	}
	for i, p := range r.List("HGP_IDENTITY_SECRET_PREVIOUS", nil) {
		if len(p) < MinSecretLen {
			r.Check("HGP_IDENTITY_SECRET_PREVIOUS", fmt.Errorf("secret %d must be at least %d bytes, got %d", i+1, MinSecretLen, len(p)))
			continue
		}
		previous = append(previous, []byte(p))
	}
	return secret, previous
}
