package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/localpg"
	"github.com/keygate/keygate/pki"
	"github.com/keygate/keygate/scim"
)

// keygateConfig has no databases: SCIM only writes keygate's own store, and
// keygate starts without any upstream. The PostgreSQL gateway listens on
// a free port of its own and stays idle.
const keygateConfig = `data_dir: ./data
public_hostnames: [localhost, 127.0.0.1]
listen:
  api: 127.0.0.1:%d
  postgres: 127.0.0.1:%d
shutdown_grace: 2s
`

// keygate is a running `keygate server`.
type keygate struct {
	*process
	bin     string
	cfgPath string
	caFile  string
	dataDir string
	scimURL string
}

// startKeygate writes a config in dir and starts the keygate binary bin on
// free loopback ports, waiting until its API answers over TLS.
func startKeygate(ctx context.Context, bin, dir string) (*keygate, error) {
	apiPort, err := localpg.FreePort()
	if err != nil {
		return nil, fmt.Errorf("start keygate: %w", err)
	}
	pgPort, err := localpg.FreePort()
	if err != nil {
		return nil, fmt.Errorf("start keygate: %w", err)
	}
	cfgPath := filepath.Join(dir, "keygate.yaml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, keygateConfig, apiPort, pgPort), 0o600); err != nil {
		return nil, fmt.Errorf("start keygate: write config: %w", err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("start keygate: %w", err)
	}
	p, err := startProcess("keygate", exec.Command(bin, "server", "--config", cfgPath), filepath.Join(dir, "keygate.log"))
	if err != nil {
		return nil, err
	}
	k := &keygate{process: p, bin: bin, cfgPath: cfgPath, caFile: cfg.DataPath(pki.CAFile),
		dataDir: cfg.Resolve(cfg.DataDir), scimURL: cfg.APIURL() + scim.Prefix}
	if err := k.waitReady(ctx, cfg.APIURL()+"/healthz"); err != nil {
		k.stop(stopGrace)
		return nil, err
	}
	return k, nil
}

// waitReady waits until the API answers healthz over TLS verified with
// keygate's CA, which the server writes on first start.
func (k *keygate) waitReady(ctx context.Context, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		if k.exited() {
			return fmt.Errorf("keygate exited during start-up (%v):\n%s", k.err, k.logTail())
		}
		if lastErr = healthy(ctx, k.caFile, url); lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("keygate not healthy after 30s: %w\n%s", lastErr, k.logTail())
}

func healthy(ctx context.Context, caFile, url string) error {
	pool, err := caPool(caFile)
	if err != nil {
		return err
	}
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// caPool is a pool holding only the CA in caFile.
func caPool(caFile string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read keygate's CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("read keygate's CA: no certificate in %s", caFile)
	}
	return pool, nil
}

// scimToken makes a provisioning token with the CLI, as an admin would for
// an identity provider.
func (k *keygate) scimToken(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, k.bin, "admin", "scim-token", "create", "--name", "bench", "--config", k.cfgPath)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("keygate admin scim-token create: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	// The token is alone on the last line.
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	token := strings.TrimSpace(lines[len(lines)-1])
	if token == "" || strings.ContainsAny(token, " \t") {
		return "", fmt.Errorf("keygate admin scim-token create: no token on the last line of its output:\n%s", stdout.String())
	}
	return token, nil
}

// version is what `keygate version` prints.
func (k *keygate) version(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, k.bin, "version").Output()
	if err != nil {
		return "unknown: " + err.Error()
	}
	return strings.TrimSpace(string(out))
}

// process is keygate running with its output in a log file. It runs in its
// own process group so that a Ctrl-C at the terminal reaches only the
// driver, which then stops it; if the driver dies, the kernel sends it
// SIGTERM.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // the exit status, valid once done is closed
}

// startProcess starts cmd with its output written to logPath.
func startProcess(name string, cmd *exec.Cmd, logPath string) (*process, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: create log: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the child's process id.
func (p *process) Pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// logTail is the end of the process's log, for error messages.
func (p *process) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}

// stop sends SIGTERM and waits up to grace for the process to exit, then
// kills it.
func (p *process) stop(grace time.Duration) error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s: %w", p.name, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("stop %s: still running %s after SIGTERM, killed", p.name, grace)
	}
}
