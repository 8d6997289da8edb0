package config

import "time"

// Report holds the targets `keygate report` measures against.
type Report struct {
	// RevocationTarget is how long a revocation may take, from the change
	// that removed access to the person's last upstream backend gone,
	// before it counts against the target and keygate logs a warning
	// (default 15m, the seeds' figure). It takes effect on restart, with
	// the gateway that measures it.
	RevocationTarget Duration `yaml:"revocation_target"`
}

// DefaultRevocationTarget is report.revocation_target's default.
const DefaultRevocationTarget = 15 * time.Minute

func (r *Report) applyDefaults() {
	if r.RevocationTarget == 0 {
		r.RevocationTarget = Duration(DefaultRevocationTarget)
	}
}

func (c *Config) validateReport() []error {
	if c.Report.RevocationTarget <= 0 {
		return []error{c.errorAt("report.revocation_target", "report.revocation_target %s: use a duration above zero, such as 15m", time.Duration(c.Report.RevocationTarget))}
	}
	return nil
}
