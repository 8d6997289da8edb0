package postgres

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// scramIterations is low on purpose. Iterations slow down guessing a
// password from a stolen verifier; keygate's passwords are 256 random bits,
// live for one login window and are never guessable, so stretching would
// only add a millisecond or two of PBKDF2 to every connection, on keygate's
// side and again in the SCRAM exchange.
const scramIterations = 16

// scramVerifier computes the SCRAM-SHA-256 verifier PostgreSQL stores for
// password, in the form ALTER ROLE ... PASSWORD accepts. Sending the verifier
// instead of the password keeps the password itself out of the upstream
// server's statement log and out of pg_stat_activity.
//
// password must be ASCII without control characters, which makes SASLprep
// the identity; keygate only ever passes it random base64url text.
func scramVerifier(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("scram salt: %w", err)
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, scramIterations, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("scram key: %w", err)
	}
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	serverKey := hmacSHA256(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", scramIterations, b64(salt), b64(storedKey[:]), b64(serverKey)), nil
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
