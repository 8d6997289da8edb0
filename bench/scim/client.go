package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/keygate/keygate/bench/internal/proc"
)

// client speaks to keygate's SCIM endpoint as an identity provider does:
// HTTPS verified against keygate's CA, a bearer token, HTTP/1.1 with
// keep-alive connections (one per worker).
type client struct {
	http *http.Client
	base string
	auth string
}

func newClient(base, caFile, token string, conns int) (*client, error) {
	pool, err := proc.CAPool(caFile)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool},
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     time.Minute,
	}
	return &client{http: &http.Client{Transport: tr, Timeout: time.Minute}, base: base, auth: "Bearer " + token}, nil
}

func (c *client) close() { c.http.CloseIdleConnections() }

// answer is a response read in full, and how long it took from sending the
// request to its last byte.
type answer struct {
	status  int
	body    []byte
	elapsed time.Duration
}

// do sends one request; path is relative to the SCIM base URL.
func (c *client) do(ctx context.Context, method, path string, body []byte) (answer, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return answer{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("Accept", "application/scim+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	elapsed := time.Since(start)
	if err != nil {
		return answer{}, fmt.Errorf("%s %s: read the response: %w", method, path, err)
	}
	return answer{status: resp.StatusCode, body: b, elapsed: elapsed}, nil
}
