package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/store"
)

// The admin endpoints that read and change people and groups. Every change
// goes through the store, so the change feed carries it to the gateway: a
// person disabled, deleted or renamed, or a group renamed or deleted, has
// their live sessions decided again within a second.

// personSource says who created a person, as far as their record tells:
// SCIM keeps the identity provider's document, a sign-in that created the
// person keeps the identity provider's id for them, and an admin neither.
func personSource(u identity.User) string {
	switch {
	case len(u.Profile) > 0:
		return "scim"
	case u.ExternalID != "":
		return "sso"
	}
	return "admin"
}

func person(u identity.User, groups []string) Person {
	if groups == nil {
		groups = []string{}
	}
	tags := u.Attributes
	if tags == nil {
		tags = map[string]string{}
	}
	return Person{Name: u.UserName, Email: u.Email, DisplayName: u.DisplayName, ExternalID: u.ExternalID, Active: u.Active,
		Groups: groups, Tags: tags, Source: personSource(u), Created: u.Created, Modified: u.Modified}
}

// groupNames lists the names of the groups a person is in now.
func (s *Server) groupNames(ctx context.Context, userID string) ([]string, error) {
	groups, err := s.Store.GroupsOf(ctx, userID)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(groups))
	for _, g := range groups {
		names = append(names, g.Name)
	}
	return names, nil
}

// currentMembers maps each group name to its members, and each user name
// to their groups, from one read of the membership history.
func (s *Server) currentMembers(ctx context.Context) (members, groupsOf map[string][]string, err error) {
	ms, err := s.Store.MembershipsAt(ctx, s.Now())
	if err != nil {
		return nil, nil, err
	}
	members, groupsOf = map[string][]string{}, map[string][]string{}
	for _, m := range ms {
		members[m.Group] = append(members[m.Group], m.User)
		groupsOf[strings.ToLower(m.User)] = append(groupsOf[strings.ToLower(m.User)], m.Group)
	}
	return members, groupsOf, nil
}

func byName(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) }

// listUsers lists everyone, by name.
func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) error {
	users, err := s.Store.ListUsers(r.Context(), store.UserQuery{})
	if err != nil {
		return err
	}
	_, groupsOf, err := s.currentMembers(r.Context())
	if err != nil {
		return err
	}
	out := make([]Person, 0, len(users))
	for _, u := range users {
		groups := groupsOf[strings.ToLower(u.UserName)]
		slices.SortFunc(groups, byName)
		out = append(out, person(u, groups))
	}
	slices.SortFunc(out, func(a, b Person) int { return byName(a.Name, b.Name) })
	return writeJSON(w, http.StatusOK, out)
}

// showUser describes one person, with their active sign-in sessions and,
// when the server can tell, their live gateway sessions.
func (s *Server) showUser(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	u, err := s.lookupUser(ctx, r.PathValue("user"))
	if err != nil {
		return err
	}
	groups, err := s.groupNames(ctx, u.ID)
	if err != nil {
		return err
	}
	sessions, err := s.Store.ListSessions(ctx, u.UserName)
	if err != nil {
		return err
	}
	now, active := s.Now(), 0
	for _, ss := range sessions {
		if ss.ValidAt(now) {
			active++
		}
	}
	out := person(u, groups)
	out.SignInSessions = &active
	if s.Live != nil {
		live := len(s.liveSessions(func(ls LiveSession) bool { return sameUser(ls.User, u.UserName) }))
		out.LiveSessions = &live
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) enableUser(w http.ResponseWriter, r *http.Request) error {
	return s.setActive(w, r, true)
}

func (s *Server) disableUser(w http.ResponseWriter, r *http.Request) error {
	return s.setActive(w, r, false)
}

// setActive enables or disables a person. Disabling ends their sign-in
// sessions (identity.EndedByDeactivation); enabling brings none back, so
// the person signs in again. A person already as asked is left alone.
func (s *Server) setActive(w http.ResponseWriter, r *http.Request, active bool) error {
	ctx := r.Context()
	u, err := s.lookupUser(ctx, r.PathValue("user"))
	if err != nil {
		return err
	}
	before := u
	if u.Active != active {
		u, err = s.Store.UpdateUser(ctx, u.ID, func(old identity.User) (identity.User, error) {
			before = old
			old.Active = active
			return old, nil
		})
		if err != nil {
			return fmt.Errorf("set %s active=%t: %w", before.UserName, active, err)
		}
	}
	out := UserChange{Changed: before.Active != u.Active}
	if out.Changed {
		typ, detail := audit.AdminUserEnable, map[string]any(nil)
		if !active {
			// The store revoked them with the change; a failure to list
			// them leaves the change recorded without the list.
			sessions, err := s.Store.ListSessions(ctx, u.UserName)
			if err != nil {
				s.Log.Error("list the sign-in sessions a deactivation ended", "user", u.UserName, "err", err)
			}
			for _, ss := range identity.EndedByDeactivation(before, u, sessions) {
				out.RevokedSessions = append(out.RevokedSessions, ss.ID)
			}
			typ, detail = audit.AdminUserDisable, map[string]any{"revoked_sessions": sessionIDs(out.RevokedSessions)}
		}
		s.adminEvent(r, typ, u.UserName, detail)
	}
	groups, err := s.groupNames(ctx, u.ID)
	if err != nil {
		return err
	}
	out.Person = person(u, groups)
	return writeJSON(w, http.StatusOK, out)
}

// sessionIDs keeps an empty list a list in the audit detail.
func sessionIDs(ids []string) []string {
	if ids == nil {
		return []string{}
	}
	return ids
}

// deleteUser removes a person. Their memberships end in the history,
// their sign-in sessions go with them, and the change feed ends their
// live gateway sessions.
func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	u, err := s.lookupUser(ctx, r.PathValue("user"))
	if err != nil {
		return err
	}
	groups, err := s.groupNames(ctx, u.ID)
	if err != nil {
		return err
	}
	if err := s.Store.DeleteUser(ctx, u.ID); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return s.noPerson(u.UserName)
		}
		return err
	}
	s.adminEvent(r, audit.AdminUserDelete, u.UserName, map[string]any{"groups": groups})
	return writeJSON(w, http.StatusOK, UserChange{Person: person(u, groups), Changed: true})
}

// renameUser gives a person a new user name. Their groups, sign-in
// sessions and membership history stay; database tokens issued under the
// old name stop working, and so do live sessions opened with them.
func (s *Server) renameUser(w http.ResponseWriter, r *http.Request) error {
	var req RenameRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if err := identity.ValidateUserName(req.Name); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	ctx := r.Context()
	u, err := s.lookupUser(ctx, r.PathValue("user"))
	if err != nil {
		return err
	}
	old := u.UserName
	u, err = s.Store.UpdateUser(ctx, u.ID, func(cur identity.User) (identity.User, error) {
		old = cur.UserName
		cur.UserName = req.Name
		return cur, nil
	})
	if errors.Is(err, store.ErrAlreadyExists) {
		return errorf(http.StatusConflict, "a person named %s exists already (names are compared without regard to case): choose another name", req.Name)
	}
	if err != nil {
		return fmt.Errorf("rename user %s: %w", old, err)
	}
	groups, err := s.groupNames(ctx, u.ID)
	if err != nil {
		return err
	}
	s.adminEvent(r, audit.AdminUserRename, u.UserName, map[string]any{"previous": old})
	return writeJSON(w, http.StatusOK, UserChange{Person: person(u, groups), Changed: old != u.UserName, Previous: old})
}

func groupInfo(g identity.Group, members []string) GroupInfo {
	if members == nil {
		members = []string{}
	}
	return GroupInfo{Name: g.Name, ExternalID: g.ExternalID, Members: members, Created: g.Created, Modified: g.Modified}
}

// listGroups lists every group with its members, by name.
func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) error {
	groups, err := s.Store.ListGroups(r.Context())
	if err != nil {
		return err
	}
	members, _, err := s.currentMembers(r.Context())
	if err != nil {
		return err
	}
	out := make([]GroupInfo, 0, len(groups))
	for _, g := range groups {
		m := members[g.Name]
		slices.SortFunc(m, byName)
		out = append(out, groupInfo(g, m))
	}
	slices.SortFunc(out, func(a, b GroupInfo) int { return byName(a.Name, b.Name) })
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) memberNames(ctx context.Context, groupID string) ([]string, error) {
	members, err := s.Store.ListMembers(ctx, groupID)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(members))
	for _, m := range members {
		names = append(names, m.UserName)
	}
	return names, nil
}

func (s *Server) showGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := s.lookupGroup(r.Context(), r.PathValue("group"))
	if err != nil {
		return err
	}
	members, err := s.memberNames(r.Context(), g.ID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, groupInfo(g, members))
}

// deleteGroup deletes a group. One with members is refused unless
// ?force=true, which first ends each membership under source admin, as
// remove-member does, so the history and the audit say who ended them.
func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	g, err := s.lookupGroup(ctx, r.PathValue("group"))
	if err != nil {
		return err
	}
	members, err := s.memberNames(ctx, g.ID)
	if err != nil {
		return err
	}
	force := r.URL.Query().Get("force") == "true"
	if len(members) > 0 && !force {
		return errorf(http.StatusConflict, "group %s still has members (%s): remove them first, or delete the group with its memberships: keygate admin group delete %s --force",
			g.Name, strings.Join(members, ", "), g.Name)
	}
	if len(members) > 0 {
		_, err := s.Store.UpdateGroup(ctx, g.ID, actorOf(r).Name, func(cur identity.Group) (identity.Group, store.MemberChange, error) {
			return cur, store.MemberChange{Replace: true}, nil
		})
		if err != nil {
			return fmt.Errorf("remove the members of group %s: %w", g.Name, err)
		}
		for _, m := range members {
			s.adminEvent(r, audit.AdminGroupRemoveMember, m, map[string]any{"group": g.Name})
		}
	}
	if err := s.Store.DeleteGroup(ctx, g.ID); err != nil {
		return fmt.Errorf("delete group %s: %w", g.Name, err)
	}
	detail := map[string]any{"group": g.Name}
	if len(members) > 0 {
		detail["removed"] = members
	}
	s.adminEvent(r, audit.AdminGroupDelete, "", detail)
	return writeJSON(w, http.StatusOK, GroupChange{Name: g.Name, Removed: members})
}

// renameGroup gives a group a new name. Its members and history stay
// (the history follows the group, not the name); access that assignments
// grant by the old name ends, and the new name's begins.
func (s *Server) renameGroup(w http.ResponseWriter, r *http.Request) error {
	var req RenameRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if err := identity.ValidateGroupName(req.Name); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	ctx := r.Context()
	g, err := s.lookupGroup(ctx, r.PathValue("group"))
	if err != nil {
		return err
	}
	old := g.Name
	g, err = s.Store.UpdateGroup(ctx, g.ID, actorOf(r).Name, func(cur identity.Group) (identity.Group, store.MemberChange, error) {
		old = cur.Name
		cur.Name = req.Name
		return cur, store.MemberChange{}, nil
	})
	if errors.Is(err, store.ErrAlreadyExists) {
		return errorf(http.StatusConflict, "a group named %s exists already (names are compared without regard to case): choose another name", req.Name)
	}
	if err != nil {
		return fmt.Errorf("rename group %s: %w", old, err)
	}
	s.adminEvent(r, audit.AdminGroupRename, "", map[string]any{"group": g.Name, "previous": old})
	return writeJSON(w, http.StatusOK, GroupChange{Name: g.Name, Previous: old})
}
