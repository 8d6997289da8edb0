package postgres

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/internal/testenv"
)

var verifierShape = regexp.MustCompile(fmt.Sprintf(`^SCRAM-SHA-256\$%d:([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$`, scramIterations))

func TestScramVerifierShape(t *testing.T) {
	a, err := scramVerifier("correct-horse")
	if err != nil {
		t.Fatal(err)
	}
	b, err := scramVerifier("correct-horse")
	if err != nil {
		t.Fatal(err)
	}
	m := verifierShape.FindStringSubmatch(a)
	if m == nil {
		t.Fatalf("verifier %q does not have PostgreSQL's shape", a)
	}
	for i, want := range []int{16, 32, 32} {
		raw, err := base64.StdEncoding.DecodeString(m[i+1])
		if err != nil || len(raw) != want {
			t.Errorf("verifier part %d = %q: %d bytes (%v), want %d", i+1, m[i+1], len(raw), err, want)
		}
	}
	if a == b {
		t.Error("two verifiers of one password are equal: the salt is not random")
	}
	if strings.Contains(a, "correct-horse") {
		t.Error("the verifier contains the password")
	}
}

func TestScramVerifierAuthenticates(t *testing.T) {
	p := testenv.StartPostgres(t)
	ctx := context.Background()
	const role = "scram_probe"
	password := base64.RawURLEncoding.EncodeToString([]byte("a random-looking password!"))
	verifier, err := scramVerifier(password)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Exec(ctx, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN; ALTER ROLE %s PASSWORD %s", role, role, literal(verifier))); err != nil {
		t.Fatal(err)
	}
	dropRole(t, p, role)
	// PostgreSQL stored the verifier as given, not a hash of it.
	if got := value(t, p, "postgres", "SELECT rolpassword FROM pg_authid WHERE rolname = '"+role+"'"); got != verifier {
		t.Fatalf("stored rolpassword = %q, want the verifier %q", got, verifier)
	}

	connString := func(pw string) string {
		return fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=postgres sslmode=disable", p.Host, p.Port, role, pw)
	}
	c, err := pgconn.Connect(ctx, connString(password))
	if err != nil {
		t.Fatalf("log in with the password behind the verifier: %v", err)
	}
	res := c.ExecParams(ctx, "SELECT current_user", nil, nil, nil, nil).Read()
	c.Close(ctx)
	if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != role {
		t.Fatalf("SELECT current_user = %v, %v", res.Rows, res.Err)
	}

	for _, wrong := range []string{password + "x", strings.ToUpper(password), verifier} {
		c, err := pgconn.Connect(ctx, connString(wrong))
		if err == nil {
			c.Close(ctx)
			t.Fatalf("log in with wrong password %q succeeded", wrong)
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
			t.Errorf("log in with a wrong password: %v, want SQLSTATE 28P01", err)
		}
	}
}
