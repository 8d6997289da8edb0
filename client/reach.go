package client

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
)

// CABundle fetches the CA bundle the server publishes at /v1/ca.pem. That
// it answers at all shows the URL reaches a keygate server whose
// certificate this client trusts; keygate configure uses it to check a
// profile before saving it.
func (c *Client) CABundle(ctx context.Context) ([]byte, error) {
	target := strings.TrimSuffix(c.base.String(), "/") + "/v1/ca.pem"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.reachError(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read the CA bundle from %s: %w", c.base, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: is %s a keygate server (listen.api or public_url in its config)?", target, resp.Status, c.base)
	}
	if block, _ := pem.Decode(raw); block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("GET %s answered without a PEM certificate: is %s a keygate server (listen.api or public_url in its config)?", target, c.base)
	}
	return raw, nil
}

// reachError turns an error from a request that got no HTTP answer into
// what to do about it. The usual first-day failures are a certificate this
// machine does not trust (no --ca, or an old bundle), a URL naming a host
// the certificate does not cover, and nothing listening at the URL; Go's
// own texts for them ("x509: certificate signed by unknown authority") do
// not say that keygate has its own CA, or where to get it.
func (c *Client) reachError(err error) error {
	if err == nil {
		return nil
	}
	var (
		hostErr    x509.HostnameError
		unknownErr x509.UnknownAuthorityError
		invalidErr x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &hostErr):
		return &ReachError{Server: c.base.String(), Err: err, Hint: c.hostnameHint(hostErr)}
	case errors.As(err, &unknownErr):
		return &ReachError{Server: c.base.String(), Err: err, Hint: c.untrustedHint()}
	case errors.As(err, &invalidErr):
		return &ReachError{Server: c.base.String(), Err: err, Hint: fmt.Sprintf(
			"keygate server at %s presents a certificate that is not valid now (%v): check this machine's clock; keygate renews its certificate itself while it runs",
			c.base, invalidErr)}
	case errors.Is(err, syscall.ECONNREFUSED):
		return &ReachError{Server: c.base.String(), Err: err, Hint: fmt.Sprintf(
			"nothing answers at %s: is keygate server running, and is this its listen.api address? (%v)", c.base, innermostNetError(err))}
	}
	return fmt.Errorf("reach keygate at %s: %w", c.base, err)
}

// untrustedHint is the advice for a certificate no trusted CA signed,
// which differs by whether a CA bundle was given at all.
func (c *Client) untrustedHint() string {
	get := fmt.Sprintf("an administrator prints it with keygate ca --config keygate.yaml; it is also at %s/v1/ca.pem", strings.TrimSuffix(c.base.String(), "/"))
	if c.caFile != "" {
		return fmt.Sprintf("keygate server at %s presents a certificate that the CA bundle %s does not sign: pass --ca FILE with this server's current CA bundle (%s), or set KEYGATE_CA",
			c.base, c.caFile, get)
	}
	return fmt.Sprintf("keygate server at %s presents a certificate this machine does not trust: pass --ca FILE with keygate's CA bundle (%s), or set KEYGATE_CA",
		c.base, get)
}

// hostnameHint is the advice for a certificate issued for other names than
// the one in the URL: use one of those, or have the server's certificate
// cover this one.
func (c *Client) hostnameHint(e x509.HostnameError) string {
	var names []string
	if e.Certificate != nil {
		names = append(names, e.Certificate.DNSNames...)
		for _, ip := range e.Certificate.IPAddresses {
			names = append(names, ip.String())
		}
	}
	valid := "no host name"
	if len(names) > 0 {
		valid = strings.Join(names, ", ")
	}
	return fmt.Sprintf("keygate server at %s presents a certificate for %s, not for %s: use one of those names in --server, or add %s to public_hostnames in the server's config (keygate's certificate covers the names listed there) and restart it",
		c.base, valid, e.Host, e.Host)
}

// innermostNetError is the part of a dial error a person can act on
// ("dial tcp 127.0.0.1:8443: connect: connection refused"), without the
// method and URL that the hint already names.
func innermostNetError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return op
	}
	return err
}

// ReachError is a request that got no answer from a keygate server, with
// what to do about it.
type ReachError struct {
	// Server is the API URL that was called.
	Server string
	// Hint says what went wrong in the person's terms and what to do.
	Hint string
	// Err is the underlying TLS or network error.
	Err error
}

func (e *ReachError) Error() string { return e.Hint }

func (e *ReachError) Unwrap() error { return e.Err }
