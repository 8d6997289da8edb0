package client

import (
	"fmt"
	"net/http"
	"net/url"
)

// NewTransport makes a client for server that sends its requests through
// rt: the portal calls the API in-process this way, with the browser's
// session as bearer, so that every page is exactly what the API allows
// that session.
func NewTransport(server string, rt http.RoundTripper, bearer string) (*Client, error) {
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("server %q: use https://HOST:PORT", server)
	}
	return &Client{base: u, bearer: bearer, http: &http.Client{Transport: rt}}, nil
}
