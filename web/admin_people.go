package web

import (
	"cmp"
	"net/url"
	"slices"
	"strings"

	"github.com/keygate/keygate/api"
)

type peopleData struct {
	adminPage
	Q      string
	People []api.Person
	// Total is how many people there are before the filter.
	Total int
}

// adminPeople lists everyone, narrowed by the filter q to those whose
// name, display name or email contains it.
func (p *Portal) adminPeople(v *visit) (string, view, error) {
	list, err := v.api.ListUsers(v.r.Context())
	if err != nil {
		return "", view{}, err
	}
	d := peopleData{adminPage: adminPage{Section: "people"}, Q: strings.TrimSpace(v.r.URL.Query().Get("q")), Total: len(list)}
	needle := strings.ToLower(d.Q)
	for _, person := range list {
		if needle == "" || strings.Contains(strings.ToLower(person.Name), needle) ||
			strings.Contains(strings.ToLower(person.DisplayName), needle) || strings.Contains(strings.ToLower(person.Email), needle) {
			d.People = append(d.People, person)
		}
	}
	return "admin_people", view{Title: "People", Data: d}, nil
}

type personData struct {
	adminPage
	api.Person
	Tags      []tag
	LiveTable liveTable
	// Reach is what the access review says the person can reach now.
	Reach []api.Holder
}

// tag is one of a person's tags, in a stable order.
type tag struct{ Key, Value string }

// adminPerson shows a person: who the identity provider says they are,
// their groups and tags, their sessions and what they can reach.
func (p *Portal) adminPerson(v *visit) (string, view, error) {
	ctx, name := v.r.Context(), v.r.PathValue("name")
	person, err := v.api.ShowUser(ctx, name)
	if err != nil {
		return "", view{}, err
	}
	live, err := v.api.ListLive(ctx, person.Name, "")
	if err != nil {
		return "", view{}, err
	}
	holders, err := v.api.Review(ctx)
	if err != nil {
		return "", view{}, err
	}
	d := personData{adminPage: adminPage{Section: "people"}, Person: person,
		LiveTable: liveTable{Live: live, CSRF: v.csrf, Back: "/admin/people/" + url.PathEscape(person.Name), Empty: person.Name + " has no open database session."}}
	for _, h := range holders {
		if h.User == person.Name {
			d.Reach = append(d.Reach, h)
		}
	}
	slices.SortFunc(d.Reach, func(a, b api.Holder) int { return cmp.Compare(a.Database, b.Database) })
	for k, val := range person.Tags {
		d.Tags = append(d.Tags, tag{k, val})
	}
	slices.SortFunc(d.Tags, func(a, b tag) int { return cmp.Compare(a.Key, b.Key) })
	return "admin_person", view{Title: "Person " + person.Name, Data: d}, nil
}

// adminDisable disables a person: the API ends their sign-in sessions,
// and with them their tokens and database sessions.
func (p *Portal) adminDisable(v *visit) (string, error) {
	name := v.r.PathValue("name")
	if _, err := v.api.DisableUser(v.r.Context(), name); err != nil {
		return "", err
	}
	return "/admin/people/" + url.PathEscape(name) + "?done=disabled", nil
}

// adminEnable makes a disabled person active again.
func (p *Portal) adminEnable(v *visit) (string, error) {
	name := v.r.PathValue("name")
	if _, err := v.api.EnableUser(v.r.Context(), name); err != nil {
		return "", err
	}
	return "/admin/people/" + url.PathEscape(name) + "?done=enabled", nil
}

type groupsData struct {
	adminPage
	Groups []api.GroupInfo
}

// adminGroups lists the groups with how many members each has.
func (p *Portal) adminGroups(v *visit) (string, view, error) {
	list, err := v.api.ListGroups(v.r.Context())
	if err != nil {
		return "", view{}, err
	}
	return "admin_groups", view{Title: "Groups", Data: groupsData{adminPage: adminPage{Section: "groups"}, Groups: list}}, nil
}

type groupData struct {
	adminPage
	api.GroupInfo
	// At is the form's moment; History the memberships over all time,
	// or those in force at At.
	At      string
	History api.GroupHistory
}

// adminGroup shows a group's members now and its membership history,
// or its members at a past moment.
func (p *Portal) adminGroup(v *visit) (string, view, error) {
	ctx, name := v.r.Context(), v.r.PathValue("name")
	g, err := v.api.ShowGroup(ctx, name)
	if err != nil {
		return "", view{}, err
	}
	d := groupData{adminPage: adminPage{Section: "groups"}, GroupInfo: g, At: v.r.URL.Query().Get("at")}
	at, err := formTime("at", d.At)
	if err != nil {
		return "", view{}, err
	}
	if d.History, err = v.api.GroupHistory(ctx, g.Name, at); err != nil {
		return "", view{}, err
	}
	d.At = formTimeValue(at)
	return "admin_group", view{Title: "Group " + g.Name, Data: d}, nil
}
