package auth

import (
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issue mints an HS256 token for sub, valid for ttl from now, with the given
// issuer and audience. The standalone mode uses it to print a development
// token; tests use it to call the gateway.
func Issue(secret []byte, sub string, ttl time.Duration, issuer, audience string) (string, error) {
	if len(secret) < MinHS256SecretLen {
		return "", fmt.Errorf("HS256 secret must be at least %d bytes, got %d", MinHS256SecretLen, len(secret))
	}
	if !ValidUserID(sub) {
		return "", fmt.Errorf("subject %q is not a valid user id", sub)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("ttl must be positive, got %s", ttl)
	}
	now := time.Now()
	claims := jwt.RegisteredClaims{
		Subject:   sub,
		Issuer:    issuer,
		Audience:  jwt.ClaimStrings{audience},
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return tok, nil
}

// LoadRSAPublicKeys reads one RSA public key from each PEM file (PKIX
// "PUBLIC KEY", PKCS#1 "RSA PUBLIC KEY" or a certificate).
func LoadRSAPublicKeys(paths []string) ([]*rsa.PublicKey, error) {
	keys := make([]*rsa.PublicKey, 0, len(paths))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read RSA public key: %w", err)
		}
		if block, _ := pem.Decode(data); block == nil {
			return nil, fmt.Errorf("%s: no PEM block found", p)
		}
		k, err := jwt.ParseRSAPublicKeyFromPEM(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if k.N.BitLen() < MinRSABits {
			return nil, fmt.Errorf("%s: RSA key has %d bits, need at least %d", p, k.N.BitLen(), MinRSABits)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no RSA public key files given")
	}
	return keys, nil
}
