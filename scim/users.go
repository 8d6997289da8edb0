package scim

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"slices"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/store"
)

func (s *Server) listUsers(w http.ResponseWriter, r *request) error {
	q, err := parseListQuery(r.Request)
	if err != nil {
		return err
	}
	m := matcher{rt: userType}
	if q.filter != nil {
		// A wrong filter is an error even when nothing would match.
		if _, err := m.match(q.filter, doc{}); err != nil {
			return err
		}
	}
	users, err := s.userCandidates(r.Context(), q)
	if err != nil {
		return err
	}
	// groups is costly to fill for a whole list: only when asked for.
	withGroups := len(q.attributes) > 0 && q.wants("groups")
	render := func(u identity.User) (doc, error) {
		var groups []identity.Group
		if withGroups {
			var err error
			if groups, err = s.store.GroupsOf(r.Context(), u.ID); err != nil {
				return nil, err
			}
		}
		return renderUser(u, groups, r.base()), nil
	}
	entries := make([]entry, 0, len(users))
	for _, u := range users {
		e := entry{created: u.Created, id: u.ID, render: func() (doc, error) { return render(u) }}
		if q.filter != nil {
			d, err := render(u)
			if err != nil {
				return err
			}
			ok, err := m.match(q.filter, d)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			e.doc = d
		}
		entries = append(entries, e)
	}
	resp, err := listResponse(userType, q, entries)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, resp)
}

// userCandidates narrows a listing through an index when the filter
// allows: Azure AD's create sequence asks for userName eq "..." for every
// person it provisions.
func (s *Server) userCandidates(ctx context.Context, q listQuery) ([]identity.User, error) {
	if q.filter != nil {
		if attr, value, ok := pushdown(q.filter); ok {
			var u identity.User
			var err error
			switch attr {
			case "userName":
				u, err = s.store.GetUserByName(ctx, value)
			case "id":
				u, err = s.store.GetUser(ctx, value)
			case "externalId":
				return s.store.ListUsers(ctx, store.UserQuery{ExternalID: value})
			default:
				return s.store.ListUsers(ctx, store.UserQuery{})
			}
			if errors.Is(err, store.ErrNotFound) {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			return []identity.User{u}, nil
		}
	}
	return s.store.ListUsers(ctx, store.UserQuery{})
}

func (s *Server) getUser(w http.ResponseWriter, r *request) error {
	u, err := s.store.GetUser(r.Context(), r.PathValue("id"))
	if err != nil {
		return storeErr(err, "user")
	}
	groups, err := s.store.GroupsOf(r.Context(), u.ID)
	if err != nil {
		return err
	}
	if groups == nil {
		groups = []identity.Group{}
	}
	q, err := parseListQuery(r.Request)
	if err != nil {
		return err
	}
	return writeResource(w, http.StatusOK, project(userType, renderUser(u, groups, r.base()), q.attributes, q.excluded))
}

func (s *Server) createUser(w http.ResponseWriter, r *request) error {
	d, err := s.readDoc(r, userType)
	if err != nil {
		return err
	}
	var u identity.User
	if err := userFromDoc(d, &u); err != nil {
		return err
	}
	u, err = s.store.CreateUser(r.Context(), u)
	if err != nil {
		return storeErr(err, "user")
	}
	s.record(r, "scim.user.create", u.UserName, map[string]any{"id": u.ID, "active": u.Active, "external_id": u.ExternalID})
	return writeResource(w, http.StatusCreated, renderUser(u, []identity.Group{}, r.base()))
}

func (s *Server) readDoc(r *request, rt *resourceType) (doc, error) {
	body, err := readBody(r.Request)
	if err != nil {
		return nil, err
	}
	raw, err := decodeObject(body)
	if err != nil {
		return nil, err
	}
	return normalize(rt, raw)
}

func (s *Server) replaceUser(w http.ResponseWriter, r *request) error {
	d, err := s.readDoc(r, userType)
	if err != nil {
		return err
	}
	return s.updateUser(w, r, func(old identity.User) (identity.User, error) {
		u := old
		return u, userFromDoc(d, &u)
	})
}

func (s *Server) patchUser(w http.ResponseWriter, r *request) error {
	body, err := readBody(r.Request)
	if err != nil {
		return err
	}
	ops, err := parsePatch(body)
	if err != nil {
		return err
	}
	return s.updateUser(w, r, func(old identity.User) (identity.User, error) {
		d := renderUser(old, nil, r.base())
		delete(d, "meta")
		if err := applyPatch(userType, d, ops); err != nil {
			return old, err
		}
		u := old
		return u, userFromDoc(d, &u)
	})
}

// updateUser applies change to the stored user inside the store's
// transaction, honouring If-Match, and answers with the result.
func (s *Server) updateUser(w http.ResponseWriter, r *request, change func(identity.User) (identity.User, error)) error {
	var before identity.User
	u, err := s.store.UpdateUser(r.Context(), r.PathValue("id"), func(old identity.User) (identity.User, error) {
		if err := checkIfMatch(r.Request, old.Version); err != nil {
			return old, err
		}
		before = old
		return change(old)
	})
	if err != nil {
		return storeErr(err, "user")
	}
	detail := map[string]any{"id": u.ID, "changed": changedFields(before, u)}
	if before.Active && !u.Active {
		// The store revoked them with the change; a failure to list them
		// leaves the change recorded without the list.
		sessions, err := s.store.ListSessions(r.Context(), u.UserName)
		if err != nil {
			s.log.Error("list the sign-in sessions a deactivation ended", "user", u.UserName, "err", err)
		}
		revoked := []string{}
		for _, ss := range identity.EndedByDeactivation(before, u, sessions) {
			revoked = append(revoked, ss.ID)
		}
		detail["revoked_sessions"] = revoked
	}
	s.record(r, "scim.user.update", u.UserName, detail)
	groups, err := s.store.GroupsOf(r.Context(), u.ID)
	if err != nil {
		return err
	}
	if groups == nil {
		groups = []identity.Group{}
	}
	return writeResource(w, http.StatusOK, renderUser(u, groups, r.base()))
}

func (s *Server) deleteUser(w http.ResponseWriter, r *request) error {
	u, err := s.store.GetUser(r.Context(), r.PathValue("id"))
	if err != nil {
		return storeErr(err, "user")
	}
	if err := checkIfMatch(r.Request, u.Version); err != nil {
		return err
	}
	if err := s.store.DeleteUser(r.Context(), u.ID); err != nil {
		return storeErr(err, "user")
	}
	s.record(r, "scim.user.delete", u.UserName, map[string]any{"id": u.ID})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// changedFields names what an update changed, for the audit log.
func changedFields(before, after identity.User) []string {
	var out []string
	if before.UserName != after.UserName {
		out = append(out, "userName")
	}
	if before.Active != after.Active {
		out = append(out, "active")
	}
	if before.ExternalID != after.ExternalID {
		out = append(out, "externalId")
	}
	if before.Email != after.Email {
		out = append(out, "email")
	}
	if before.DisplayName != after.DisplayName {
		out = append(out, "displayName")
	}
	for k := range after.Attributes {
		if before.Attributes[k] != after.Attributes[k] {
			out = append(out, "tag "+k)
		}
	}
	for k := range before.Attributes {
		if _, ok := after.Attributes[k]; !ok {
			out = append(out, "tag "+k)
		}
	}
	if len(out) == 0 && !reflect.DeepEqual(before.Profile, after.Profile) {
		out = append(out, "profile")
	}
	slices.Sort(out)
	return out
}

// record audits a change made through SCIM, with the token as the actor.
func (s *Server) record(r *request, typ, user string, detail map[string]any) {
	s.audit.Record(audit.Event{Type: typ, Actor: r.source(), User: user, Client: r.client(), Detail: detail})
}

// storeErr turns store errors into SCIM errors.
func storeErr(err error, what string) error {
	var se *Error
	switch {
	case errors.As(err, &se):
		return se
	case errors.Is(err, store.ErrNotFound):
		return notFound("no such %s", what)
	case errors.Is(err, store.ErrAlreadyExists):
		if what == "group" {
			return errorf(http.StatusConflict, uniqueness, "a group with this displayName already exists")
		}
		return errorf(http.StatusConflict, uniqueness, "a user with this userName already exists (user names are compared without regard to case)")
	}
	return err
}
