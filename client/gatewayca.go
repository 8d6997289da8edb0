package client

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/keygate/keygate/internal/atomicfile"
)

// CAFile is the CA bundle the client trusts; empty means the system's
// roots.
func (c *Client) CAFile() string { return c.caFile }

// GatewayCAPath is where `keygate db connect` keeps the CA bundle it
// fetched for profile, in the CLI's config directory dir.
func GatewayCAPath(dir, profile string) string {
	return filepath.Join(dir, "ca", profile+".pem")
}

// GatewayCA is a file holding keygate's CA bundle, which signs the
// gateway's certificate, for a database client to verify it with: the
// bundle this client trusts when it was given one, else the bundle the
// server publishes, saved as GatewayCAPath(dir, profile). The latter case
// is a server behind a proxy with a publicly trusted certificate; the
// gateway's certificate is still keygate's own.
func (c *Client) GatewayCA(ctx context.Context, dir, profile string) (string, error) {
	if c.caFile != "" {
		return filepath.Abs(c.caFile)
	}
	pem, err := c.CABundle(ctx)
	if err != nil {
		return "", fmt.Errorf("fetch keygate's CA bundle for the gateway's certificate: %w", err)
	}
	path := GatewayCAPath(dir, profile)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("save keygate's CA bundle: %w", err)
	}
	if err := atomicfile.WriteFile(path, pem, 0o644); err != nil {
		return "", fmt.Errorf("save keygate's CA bundle: %w", err)
	}
	return path, nil
}
