package scim

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/keygate/keygate/identity"
	"github.com/keygate/keygate/store"
)

func (s *Server) listGroups(w http.ResponseWriter, r *request) error {
	q, err := parseListQuery(r.Request)
	if err != nil {
		return err
	}
	m := matcher{rt: groupType}
	if q.filter != nil {
		if _, err := m.match(q.filter, doc{}); err != nil {
			return err
		}
	}
	groups, err := s.groupCandidates(r.Context(), q)
	if err != nil {
		return err
	}
	// Azure AD reads groups with excludedAttributes=members: then the
	// members are not even loaded.
	withMembers := q.wants("members")
	render := func(g identity.Group) (doc, error) {
		var members []identity.Member
		if withMembers {
			var err error
			if members, err = s.members(r.Context(), g.ID); err != nil {
				return nil, err
			}
		}
		return renderGroup(g, members, r.base()), nil
	}
	entries := make([]entry, 0, len(groups))
	for _, g := range groups {
		e := entry{created: g.Created, id: g.ID, render: func() (doc, error) { return render(g) }}
		if q.filter != nil {
			d, err := render(g)
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
	resp, err := listResponse(groupType, q, entries)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, resp)
}

func (s *Server) members(ctx context.Context, groupID string) ([]identity.Member, error) {
	members, err := s.store.ListMembers(ctx, groupID)
	if members == nil && err == nil {
		members = []identity.Member{}
	}
	return members, err
}

func (s *Server) groupCandidates(ctx context.Context, q listQuery) ([]identity.Group, error) {
	if q.filter != nil {
		if attr, value, ok := pushdown(q.filter); ok && (attr == "displayName" || attr == "id") {
			var g identity.Group
			var err error
			if attr == "id" {
				g, err = s.store.GetGroup(ctx, value)
			} else {
				g, err = s.store.GetGroupByName(ctx, value)
			}
			if errors.Is(err, store.ErrNotFound) {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			return []identity.Group{g}, nil
		}
	}
	return s.store.ListGroups(ctx)
}

func (s *Server) getGroup(w http.ResponseWriter, r *request) error {
	g, err := s.store.GetGroup(r.Context(), r.PathValue("id"))
	if err != nil {
		return storeErr(err, "group")
	}
	q, err := parseListQuery(r.Request)
	if err != nil {
		return err
	}
	var members []identity.Member
	if q.wants("members") {
		if members, err = s.members(r.Context(), g.ID); err != nil {
			return err
		}
	}
	return writeResource(w, http.StatusOK, project(groupType, renderGroup(g, members, r.base()), q.attributes, q.excluded))
}

// groupFields reads displayName and externalId from a group doc.
func groupFields(d doc, g *identity.Group) error {
	name := strings.TrimSpace(d.str("displayName"))
	if name == "" {
		return badValue("displayName is required")
	}
	if err := identity.ValidateGroupName(name); err != nil {
		return badValue("displayName: %v", err)
	}
	g.Name = name
	g.ExternalID = d.str("externalId")
	return nil
}

func (s *Server) createGroup(w http.ResponseWriter, r *request) error {
	d, err := s.readDoc(r, groupType)
	if err != nil {
		return err
	}
	var g identity.Group
	if err := groupFields(d, &g); err != nil {
		return err
	}
	ids, err := memberIDs(d["members"])
	if err != nil {
		return err
	}
	g, err = s.store.CreateGroup(r.Context(), g)
	if err != nil {
		return storeErr(err, "group")
	}
	if len(ids) > 0 {
		// On failure UpdateGroup returns a zero group: keep g, whose id
		// the undo needs.
		withMembers, err := s.store.UpdateGroup(r.Context(), g.ID, r.source(), func(g identity.Group) (identity.Group, store.MemberChange, error) {
			return g, store.MemberChange{Add: ids}, nil
		})
		if err != nil {
			// The group is not created half: undo it.
			if derr := s.store.DeleteGroup(r.Context(), g.ID); derr != nil {
				s.log.Error("could not undo a group whose members were refused", "group", g.Name, "err", derr)
			}
			return memberErr(err)
		}
		g = withMembers
	}
	s.record(r, "scim.group.create", "", map[string]any{"id": g.ID, "group": g.Name, "added": summary(ids)})
	members, err := s.members(r.Context(), g.ID)
	if err != nil {
		return err
	}
	return writeResource(w, http.StatusCreated, renderGroup(g, members, r.base()))
}

// memberErr explains a store error from adding members.
func memberErr(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return badValue("a member is not a user keygate knows: add the user first (%v)", err)
	}
	return storeErr(err, "group")
}

func (s *Server) replaceGroup(w http.ResponseWriter, r *request) error {
	d, err := s.readDoc(r, groupType)
	if err != nil {
		return err
	}
	var fields identity.Group
	if err := groupFields(d, &fields); err != nil {
		return err
	}
	ids, err := memberIDs(d["members"])
	if err != nil {
		return err
	}
	// PUT replaces the whole group: members it does not list are removed.
	mp := newMemberPatch(nil)
	mp.replaceAll(ids)
	return s.updateGroup(w, r, func(old identity.Group) (identity.Group, *memberPatch, error) {
		g := old
		g.Name, g.ExternalID = fields.Name, fields.ExternalID
		return g, mp, nil
	})
}

func (s *Server) patchGroup(w http.ResponseWriter, r *request) error {
	body, err := readBody(r.Request)
	if err != nil {
		return err
	}
	ops, err := parsePatch(body)
	if err != nil {
		return err
	}
	ops, err = expand(groupType, ops)
	if err != nil {
		return err
	}
	return s.updateGroup(w, r, func(old identity.Group) (identity.Group, *memberPatch, error) {
		mp := newMemberPatch(func() ([]map[string]any, error) {
			members, err := s.members(r.Context(), old.ID)
			if err != nil {
				return nil, err
			}
			out := make([]map[string]any, len(members))
			for i, m := range members {
				out[i] = map[string]any{"value": m.UserID, "display": m.UserName, "type": "User"}
			}
			return out, nil
		})
		d := renderGroup(old, nil, r.base())
		delete(d, "meta")
		for _, o := range ops {
			t, err := resolvePath(groupType, o.path)
			if err != nil {
				return old, nil, err
			}
			if t.name == "members" {
				if err := mp.apply(o, t.path); err != nil {
					return old, nil, err
				}
				continue
			}
			if err := t.apply(groupType, d, o); err != nil {
				return old, nil, err
			}
		}
		g := old
		if err := groupFields(d, &g); err != nil {
			return old, nil, err
		}
		return g, mp, nil
	})
}

// updateGroup applies change inside the store's transaction, honouring
// If-Match, and answers with the result.
func (s *Server) updateGroup(w http.ResponseWriter, r *request, change func(identity.Group) (identity.Group, *memberPatch, error)) error {
	var before identity.Group
	var mc store.MemberChange
	ran := false
	g, err := s.store.UpdateGroup(r.Context(), r.PathValue("id"), r.source(), func(old identity.Group) (identity.Group, store.MemberChange, error) {
		if err := checkIfMatch(r.Request, old.Version); err != nil {
			return old, store.MemberChange{}, err
		}
		before, ran = old, true
		g, mp, err := change(old)
		if err != nil {
			return old, store.MemberChange{}, err
		}
		mc = mp.change()
		return g, mc, nil
	})
	if err != nil {
		if ran {
			return memberErr(err)
		}
		return storeErr(err, "group")
	}
	detail := map[string]any{"id": g.ID, "group": g.Name}
	if before.Name != g.Name {
		detail["renamed_from"] = before.Name
	}
	if mc.Replace {
		detail["members_set"] = summary(mc.Set)
	}
	if len(mc.Add) > 0 {
		detail["added"] = summary(mc.Add)
	}
	if len(mc.Remove) > 0 {
		detail["removed"] = summary(mc.Remove)
	}
	s.record(r, "scim.group.update", "", detail)
	q, err := parseListQuery(r.Request)
	if err != nil {
		return err
	}
	var members []identity.Member
	if q.wants("members") {
		if members, err = s.members(r.Context(), g.ID); err != nil {
			return err
		}
	}
	return writeResource(w, http.StatusOK, project(groupType, renderGroup(g, members, r.base()), q.attributes, q.excluded))
}

func (s *Server) deleteGroup(w http.ResponseWriter, r *request) error {
	g, err := s.store.GetGroup(r.Context(), r.PathValue("id"))
	if err != nil {
		return storeErr(err, "group")
	}
	if err := checkIfMatch(r.Request, g.Version); err != nil {
		return err
	}
	if err := s.store.DeleteGroup(r.Context(), g.ID); err != nil {
		return storeErr(err, "group")
	}
	s.record(r, "scim.group.delete", "", map[string]any{"id": g.ID, "group": g.Name})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// summary keeps the audit detail of a large membership change readable.
func summary(ids []string) any {
	const show = 100
	if len(ids) <= show {
		return ids
	}
	return fmt.Sprintf("%d users, starting %s", len(ids), strings.Join(ids[:show], ", "))
}
