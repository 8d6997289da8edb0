// Package deploy holds what installs and runs keygate outside a checkout:
// the systemd unit (keygate.service). Its tests check that unit, the
// release build (scripts/build) and the container image (Dockerfile at
// the repository's root) as an operator would use them.
package deploy
