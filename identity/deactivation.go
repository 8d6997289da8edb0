package identity

// EndedByDeactivation returns the sign-in sessions, among sessions (the
// person's, read after the change), that a change of a person from before to
// after ended.
//
// A person who stops being active loses every sign-in session they hold, so
// that enabling them again brings none back: they sign in anew. The store
// revokes those sessions in the transaction that deactivates the person, at
// the moment of the change (after.Modified); this names them, so that the
// admin API and SCIM, which both deactivate people, record the same thing.
func EndedByDeactivation(before, after User, sessions []Session) []Session {
	if !before.Active || after.Active {
		return nil
	}
	var out []Session
	for _, s := range sessions {
		if s.Revoked.Equal(after.Modified) {
			out = append(out, s)
		}
	}
	return out
}
