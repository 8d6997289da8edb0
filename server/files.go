package server

import (
	"log/slog"
	"syscall"
)

// raiseFileLimit raises the soft open-file limit to the hard one and logs
// it. Every gateway session holds two descriptors, the client's and its
// upstream's, so this limit, not memory, is what bounds how many sessions
// one server holds; the usual soft limit of 1024 would refuse connections
// at about 500. Go's runtime raises it too on some systems; saying so in the
// log tells whoever runs keygate where the bound is. A limit that cannot
// be raised is logged, not fatal.
func raiseFileLimit(log *slog.Logger) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Warn("cannot read the open-file limit", "err", err)
		return
	}
	if lim.Cur >= lim.Max {
		log.Info("open-file limit", "limit", lim.Cur)
		return
	}
	from := lim.Cur
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Warn("cannot raise the open-file limit", "limit", from, "hard_limit", lim.Max, "err", err)
		return
	}
	log.Info("raised the open-file limit", "from", from, "to", lim.Cur)
}
