package client

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/atomicfile"
)

// The CLI keeps two things in its config directory ($KEYGATE_CONFIG_DIR,
// by default keygate/ under the user's config directory, such as
// ~/.config/keygate):
//
//   - config: profiles, in the format of ~/.aws/config, written by hand or
//     by the first `keygate login --server`;
//   - sessions/PROFILE.json: the sign-in session `keygate login` got, mode
//     0600, like ~/.aws/sso/cache.

// DefaultProfile is the profile used when none is named.
const DefaultProfile = "default"

// Profile is one section of the profiles file.
type Profile struct {
	Name string
	// Server is the keygate API URL, https://HOST:PORT.
	Server string
	// CA is the CA bundle that signs the server's certificate; empty means
	// the system's roots.
	CA string
	// Database and Access are what `keygate db token` asks for when not
	// told.
	Database string
	Access   string
}

// profileKeys are the keys a profile may set, with where they go.
var profileKeys = map[string]func(p *Profile) *string{
	"server":   func(p *Profile) *string { return &p.Server },
	"ca":       func(p *Profile) *string { return &p.CA },
	"database": func(p *Profile) *string { return &p.Database },
	"access":   func(p *Profile) *string { return &p.Access },
}

// ConfigDir is where the CLI keeps profiles and sessions.
func ConfigDir() (string, error) {
	if d := os.Getenv("KEYGATE_CONFIG_DIR"); d != "" {
		return d, nil
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the config directory: %w (set KEYGATE_CONFIG_DIR)", err)
	}
	return filepath.Join(d, "keygate"), nil
}

var profileNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// CheckProfileName refuses names that cannot be a section or a file name.
func CheckProfileName(name string) error {
	if !profileNameRE.MatchString(name) {
		return fmt.Errorf("profile name %q: use letters, digits, '.', '_' and '-'", name)
	}
	return nil
}

// Profiles is the parsed profiles file.
type Profiles struct {
	path     string
	profiles map[string]Profile
}

// LoadProfiles reads the profiles file in dir; a missing file is an empty
// set of profiles.
func LoadProfiles(dir string) (*Profiles, error) {
	path := filepath.Join(dir, "config")
	ps := &Profiles{path: path, profiles: map[string]Profile{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ps, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read profiles: %w", err)
	}
	if err := ps.parse(data); err != nil {
		return nil, err
	}
	return ps, nil
}

// parse reads the ~/.aws/config format: [default] or [profile NAME]
// sections of key = value lines; # and ; start comments.
func (ps *Profiles) parse(data []byte) error {
	var cur *Profile
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") {
				return fmt.Errorf("%s:%d: a section header ends with ]: %q", ps.path, n, line)
			}
			name := strings.TrimSpace(line[1 : len(line)-1])
			if rest, ok := strings.CutPrefix(name, "profile "); ok {
				name = strings.TrimSpace(rest)
			}
			if err := CheckProfileName(name); err != nil {
				return fmt.Errorf("%s:%d: %w", ps.path, n, err)
			}
			p := ps.profiles[name]
			p.Name = name
			ps.profiles[name] = p
			cur = &p
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("%s:%d: expected key = value, or a [profile NAME] header: %q", ps.path, n, line)
		}
		if cur == nil {
			return fmt.Errorf("%s:%d: %q comes before any [profile NAME] header", ps.path, n, line)
		}
		key = strings.ToLower(strings.TrimSpace(key))
		field, known := profileKeys[key]
		if !known {
			return fmt.Errorf("%s:%d: unknown key %q: a profile sets server, ca, database and access", ps.path, n, key)
		}
		*field(cur) = strings.TrimSpace(value)
		ps.profiles[cur.Name] = *cur
	}
	return sc.Err()
}

// Get returns the named profile and whether the file has it.
func (ps *Profiles) Get(name string) (Profile, bool) {
	p, ok := ps.profiles[name]
	if !ok {
		p.Name = name
	}
	return p, ok
}

// Add appends a new profile to the file. It never rewrites what is there,
// so comments and hand edits survive.
func (ps *Profiles) Add(p Profile) error {
	if _, ok := ps.profiles[p.Name]; ok {
		return fmt.Errorf("profile %s already exists in %s", p.Name, ps.path)
	}
	old, err := os.ReadFile(ps.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read profiles: %w", err)
	}
	var b bytes.Buffer
	b.Write(old)
	if len(old) > 0 && !bytes.HasSuffix(old, []byte("\n\n")) {
		b.WriteString("\n")
	}
	if p.Name == DefaultProfile {
		b.WriteString("[default]\n")
	} else {
		fmt.Fprintf(&b, "[profile %s]\n", p.Name)
	}
	for _, kv := range [][2]string{{"server", p.Server}, {"ca", p.CA}, {"database", p.Database}, {"access", p.Access}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, "%s = %s\n", kv[0], kv[1])
		}
	}
	if err := os.MkdirAll(filepath.Dir(ps.path), 0o700); err != nil {
		return fmt.Errorf("save profile: %w", err)
	}
	if err := atomicfile.WriteFile(ps.path, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("save profile: %w", err)
	}
	ps.profiles[p.Name] = p
	return nil
}

// Path is the profiles file's path.
func (ps *Profiles) Path() string { return ps.path }

// CachedSession is what `keygate login` keeps for a profile.
type CachedSession struct {
	// Server is the API the credential belongs to; it is never sent
	// anywhere else.
	Server string `json:"server"`
	// CA is the bundle login trusted the server with; empty for the
	// system's roots.
	CA         string    `json:"ca,omitempty"`
	Credential string    `json:"credential"`
	ID         string    `json:"session_id"`
	User       string    `json:"user"`
	Expires    time.Time `json:"expires_at"`
	MFA        bool      `json:"mfa"`
	Method     string    `json:"method"`
}

// SessionCachePath is where the profile's session is kept.
func SessionCachePath(dir, profile string) string {
	return filepath.Join(dir, "sessions", profile+".json")
}

// SaveSession writes the profile's session, readable by its owner alone.
func SaveSession(dir, profile string, s CachedSession) error {
	path := SessionCachePath(dir, profile)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	return nil
}

// ErrNoSession means the profile has no cached session.
var ErrNoSession = errors.New("no cached session")

// LoadSession reads the profile's session. A cache file that others may
// read is refused, as ssh refuses such a key.
func LoadSession(dir, profile string) (CachedSession, error) {
	path := SessionCachePath(dir, profile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return CachedSession{}, ErrNoSession
	}
	if err != nil {
		return CachedSession{}, fmt.Errorf("read session: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return CachedSession{}, fmt.Errorf("read session: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return CachedSession{}, fmt.Errorf("%s is readable by others (mode %04o): remove it and run keygate login again", path, st.Mode().Perm())
	}
	var s CachedSession
	if err := json.NewDecoder(f).Decode(&s); err != nil {
		return CachedSession{}, fmt.Errorf("read session %s: %w (remove it and run keygate login again)", path, err)
	}
	return s, nil
}

// RemoveSession forgets the profile's session.
func RemoveSession(dir, profile string) error {
	err := os.Remove(SessionCachePath(dir, profile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove session: %w", err)
	}
	return nil
}

// Set writes p's server and CA into the profiles file: a new section when
// the file has no such profile, else those two keys in its section,
// replaced in place, so that comments, other keys and other profiles
// survive. An empty value removes the key.
func (ps *Profiles) Set(p Profile) error {
	old, ok := ps.profiles[p.Name]
	if !ok {
		return ps.Add(p)
	}
	data, err := os.ReadFile(ps.path)
	if err != nil {
		return fmt.Errorf("read profiles: %w", err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	start, end := ps.section(lines, p.Name)
	if start < 0 {
		return fmt.Errorf("profile %s vanished from %s while keygate was changing it", p.Name, ps.path)
	}
	out := append([]string(nil), lines[:start+1]...)
	for _, kv := range [][2]string{{"server", p.Server}, {"ca", p.CA}} {
		if kv[1] != "" {
			out = append(out, kv[0]+" = "+kv[1]+"\n")
		}
	}
	for _, line := range lines[start+1 : end] {
		key, _, _ := strings.Cut(strings.TrimSpace(line), "=")
		if k := strings.ToLower(strings.TrimSpace(key)); k != "server" && k != "ca" {
			out = append(out, line)
		}
	}
	out = append(out, lines[end:]...)
	if err := atomicfile.WriteFile(ps.path, []byte(strings.Join(out, "")), 0o600); err != nil {
		return fmt.Errorf("save profile: %w", err)
	}
	old.Server, old.CA = p.Server, p.CA
	ps.profiles[p.Name] = old
	return nil
}

// section finds the lines of the named profile's last section: its header
// at start, and end just past its last line. start is -1 when there is
// none.
func (ps *Profiles) section(lines []string, name string) (start, end int) {
	start, end = -1, len(lines)
	for i, line := range lines {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "[") || !strings.HasSuffix(line, "]") {
			continue
		}
		if start >= 0 && end == len(lines) {
			end = i
		}
		header := strings.TrimSpace(line[1 : len(line)-1])
		if rest, ok := strings.CutPrefix(header, "profile "); ok {
			header = strings.TrimSpace(rest)
		}
		if header == name {
			start, end = i, len(lines)
		}
	}
	return start, end
}

// ProfileFileVersion is the version of the profile file format below;
// a reader refuses versions it does not know.
const ProfileFileVersion = 1

// ProfileFile is a ready profile that an administrator hands a person when
// the server has no sign-in set up: `keygate admin session create NAME
// --profile-out FILE` writes it and `keygate configure --import FILE`
// installs it. It holds a session credential, so it is a secret, written
// with mode 0600.
type ProfileFile struct {
	// Version is ProfileFileVersion.
	Version int `json:"keygate_profile"`
	// Profile is the profile name suggested for it.
	Profile string `json:"profile"`
	// Server is the keygate API URL, https://HOST:PORT.
	Server string `json:"server"`
	// CAPEM is keygate's CA bundle, PEM, when the server's certificate
	// comes from it; empty when the system's roots verify it.
	CAPEM string `json:"ca_pem,omitempty"`
	// User is the person the session belongs to.
	User       string    `json:"user"`
	SessionID  string    `json:"session_id"`
	Credential string    `json:"credential"`
	Expires    time.Time `json:"expires_at"`
}

// SuggestedProfileName is a profile name for server: its host name, which
// tells several keygate servers apart, or default.
func SuggestedProfileName(server string) string {
	u, err := url.Parse(server)
	if err != nil || CheckProfileName(u.Hostname()) != nil {
		return DefaultProfile
	}
	return u.Hostname()
}

// WriteProfileFile writes f to path, mode 0600. It refuses to replace an
// existing file unless overwrite is set.
func WriteProfileFile(path string, f ProfileFile, overwrite bool) error {
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if overwrite {
		return atomicfile.WriteFile(path, data, 0o600)
	}
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists: choose another file, or pass --force to replace it", path)
	}
	if err != nil {
		return fmt.Errorf("write profile file: %w", err)
	}
	if _, err := out.Write(data); err != nil {
		out.Close()
		os.Remove(path)
		return fmt.Errorf("write profile file %s: %w", path, err)
	}
	if err := out.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("write profile file %s: %w", path, err)
	}
	return nil
}

// ReadProfileFile reads and checks a profile file.
func ReadProfileFile(path string) (ProfileFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return ProfileFile{}, fmt.Errorf("read profile file: %w", err)
	}
	var f ProfileFile
	if err := json.Unmarshal(data, &f); err != nil {
		return ProfileFile{}, fmt.Errorf("%s is not a keygate profile file (made with keygate admin session create NAME --profile-out FILE): %w", path, err)
	}
	if err := f.check(); err != nil {
		return ProfileFile{}, fmt.Errorf("profile file %s: %w", path, err)
	}
	return f, nil
}

func (f ProfileFile) check() error {
	switch {
	case f.Version == 0:
		return errors.New("no keygate_profile version: it is not a keygate profile file (made with keygate admin session create NAME --profile-out FILE)")
	case f.Version > ProfileFileVersion:
		return fmt.Errorf("version %d is newer than this keygate reads (%d): upgrade keygate", f.Version, ProfileFileVersion)
	case f.Version < 0:
		return fmt.Errorf("version %d is not a version", f.Version)
	case f.Credential == "" || f.User == "":
		return errors.New("it holds no session: ask the administrator for a new one")
	}
	if u, err := url.Parse(f.Server); err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("server %q is not https://HOST:PORT", f.Server)
	}
	if err := CheckProfileName(f.Profile); err != nil {
		return err
	}
	if f.CAPEM != "" && !x509.NewCertPool().AppendCertsFromPEM([]byte(f.CAPEM)) {
		return errors.New("ca_pem holds no PEM certificate")
	}
	return nil
}
