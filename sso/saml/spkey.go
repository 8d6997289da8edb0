package saml

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"time"

	"github.com/keygate/keygate/internal/atomicfile"
)

// spKeyLifetime is how long keygate's SP certificate is valid. Identity
// providers pin it from the metadata, so it is long-lived; it is renewed
// (and must be uploaded again) only if it is within a year of expiry.
const spKeyLifetime = 10 * 365 * 24 * time.Hour

// LoadOrCreateKey reads keygate's SP key pair from path (one PEM file with
// the key and the certificate), creating it on first use. The key is RSA
// because XML encryption wraps assertion keys with RSA.
func LoadOrCreateKey(path, entityID string, now time.Time) (*rsa.PrivateKey, *x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err == nil {
		key, cert, err := parseKeyPair(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("SAML SP key %s: %w", path, err)
		}
		if cert.NotAfter.Sub(now) > 365*24*time.Hour {
			return key, cert, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("SAML SP key: %w", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, fmt.Errorf("SAML SP key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("SAML SP key: %w", err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "keygate SAML " + entityID},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(spKeyLifetime), KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("SAML SP certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("SAML SP certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("SAML SP key: %w", err)
	}
	out := append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	if err := atomicfile.WriteFile(path, out, 0o600); err != nil {
		return nil, nil, fmt.Errorf("write SAML SP key: %w", err)
	}
	return key, cert, nil
}

func parseKeyPair(raw []byte) (*rsa.PrivateKey, *x509.Certificate, error) {
	var key *rsa.PrivateKey
	var cert *x509.Certificate
	for {
		var b *pem.Block
		b, raw = pem.Decode(raw)
		if b == nil {
			break
		}
		switch b.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, nil, err
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, nil, errors.New("the key is not RSA")
			}
			key = rk
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, nil, err
			}
			cert = c
		}
	}
	if key == nil || cert == nil {
		return nil, nil, errors.New("the file needs a PRIVATE KEY and a CERTIFICATE block")
	}
	return key, cert, nil
}
