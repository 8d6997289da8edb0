package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/keygate/keygate/bench/internal/proc"
)

// created reads the id out of a 201 answer.
func created(into *string) func([]byte) error {
	return func(body []byte) error {
		var r struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return fmt.Errorf("unreadable answer: %w", err)
		}
		if r.ID == "" {
			return errors.New("no id in the answer")
		}
		*into = r.ID
		return nil
	}
}

// provision creates the plan's users and groups and adds its memberships,
// a phase at a time, with o.workers requests in flight.
func provision(ctx context.Context, c *client, kg *keygate, p *plan, o options, rep *report, w io.Writer) error {
	pid := kg.Pid()
	before, _, err := proc.Memory(pid)
	if err != nil {
		return err
	}
	rep.KeygateMemory.BeforeRSSKiB = before
	mem := startSampling(pid)
	defer func() { rep.KeygateMemory.ProvisioningMaxRSSKiB = mem.finish() }()
	start := time.Now()
	phase := func(name string, calls []call) error {
		res, err := runPhase(ctx, c, name, o.workers, calls, pid)
		if err != nil {
			return err
		}
		rep.Provisioning = append(rep.Provisioning, res)
		fmt.Fprintf(w, "  %-36s %7d requests in %6.1f s, %7.1f/s, %d errors\n", name, res.Requests, res.Seconds, res.RequestsPerSecond, res.Errors)
		return nil
	}

	userIDs := make([]string, len(p.users))
	calls := make([]call, len(p.users))
	for i, u := range p.users {
		body, err := u.body()
		if err != nil {
			return fmt.Errorf("user %s: %w", u.userName, err)
		}
		calls[i] = call{method: "POST", path: "/Users", body: body, objects: 1, check: created(&userIDs[i])}
	}
	if err := phase("POST /Users", calls); err != nil {
		return err
	}

	groupIDs := make([]string, len(p.groups))
	calls = make([]call, len(p.groups))
	for i, g := range p.groups {
		body, err := g.body()
		if err != nil {
			return fmt.Errorf("group %s: %w", g.displayName, err)
		}
		calls[i] = call{method: "POST", path: "/Groups", body: body, objects: 1, check: created(&groupIDs[i])}
	}
	if err := phase("POST /Groups", calls); err != nil {
		return err
	}

	// A membership whose user or group failed to be created cannot be
	// sent; the failure is already counted, the report says how many.
	batched, single := []call{}, []call{}
	for g, members := range p.members {
		var ids []string
		for _, u := range members {
			if groupIDs[g] == "" || userIDs[u] == "" {
				rep.Unsent++
				continue
			}
			ids = append(ids, userIDs[u])
		}
		path := "/Groups/" + groupIDs[g]
		split := min(p.batched[g], len(ids))
		for lo := 0; lo < split; lo += o.batch {
			hi := min(lo+o.batch, split)
			body, err := addMembersBody(ids[lo:hi])
			if err != nil {
				return fmt.Errorf("members of %s: %w", p.groups[g].displayName, err)
			}
			batched = append(batched, call{method: "PATCH", path: path, body: body, objects: hi - lo})
		}
		for _, id := range ids[split:] {
			body, err := addMembersBody([]string{id})
			if err != nil {
				return fmt.Errorf("members of %s: %w", p.groups[g].displayName, err)
			}
			single = append(single, call{method: "PATCH", path: path, body: body, objects: 1})
		}
	}
	if err := phase(fmt.Sprintf("PATCH /Groups/{id}, %d members each", o.batch), batched); err != nil {
		return err
	}
	if len(single) > 0 {
		if err := phase("PATCH /Groups/{id}, 1 member each", single); err != nil {
			return err
		}
	}
	rep.finishProvisioning(time.Since(start))

	p.userIDs, p.groupIDs = userIDs, groupIDs
	return nil
}

// readBack times, one request at a time, what identity providers read
// from a full store: Azure AD looks every user up by userName before it
// creates or updates them, and reads groups without their members.
func readBack(ctx context.Context, c *client, kg *keygate, p *plan, o options, rep *report, w io.Writer) error {
	phase := func(name string, calls []call) error {
		if len(calls) == 0 {
			return nil
		}
		res, err := runPhase(ctx, c, name, 1, calls, kg.Pid())
		if err != nil {
			return err
		}
		rep.Reads = append(rep.Reads, res)
		fmt.Fprintf(w, "  %-56s %5d requests, p50 %6.2f ms, %d errors\n", name, res.Requests, res.Latency.P50, res.Errors)
		return nil
	}

	// Half the names as stored, half upper-cased: userName is compared
	// without regard to case, and the lookup must still use the index.
	var exact, otherCase []call
	for i := range o.lookups {
		u := p.rng.IntN(len(p.users))
		if p.userIDs[u] == "" {
			continue
		}
		name := p.users[u].userName
		list := &exact
		if i%2 == 1 {
			name, list = strings.ToUpper(name), &otherCase
		}
		*list = append(*list, call{method: "GET", path: "/Users?filter=" + url.QueryEscape(`userName eq "`+name+`"`),
			objects: 1, check: found(p.userIDs[u])})
	}
	if err := phase(`GET /Users?filter=userName eq "…", as stored`, exact); err != nil {
		return err
	}
	if err := phase(`GET /Users?filter=userName eq "…", upper-cased`, otherCase); err != nil {
		return err
	}

	g := p.largestGroup()
	if id := p.groupIDs[g]; id != "" {
		want := 0
		for _, u := range p.members[g] {
			if p.userIDs[u] != "" {
				want++
			}
		}
		noMembers := repeat(o.reads, call{method: "GET", path: "/Groups/" + id + "?excludedAttributes=members", objects: 1, check: hasMembers(-1)})
		if err := phase("GET /Groups/{largest}?excludedAttributes=members", noMembers); err != nil {
			return err
		}
		full := repeat(o.reads, call{method: "GET", path: "/Groups/" + id, objects: 1, check: hasMembers(want)})
		if err := phase(fmt.Sprintf("GET /Groups/{largest}, %d members", want), full); err != nil {
			return err
		}
	}
	users := 0
	for _, id := range p.userIDs {
		if id != "" {
			users++
		}
	}
	page := repeat(o.reads, call{method: "GET", path: "/Users?startIndex=1&count=100", objects: 1, check: listed(users, min(users, 100))})
	return phase("GET /Users?startIndex=1&count=100", page)
}

func repeat(n int, c call) []call {
	out := make([]call, n)
	for i := range out {
		out[i] = c
	}
	return out
}

type listAnswer struct {
	TotalResults int `json:"totalResults"`
	ItemsPerPage int `json:"itemsPerPage"`
	Resources    []struct {
		ID string `json:"id"`
	} `json:"Resources"`
}

// found checks that a filtered listing answers exactly the user id.
func found(id string) func([]byte) error {
	return func(body []byte) error {
		var r listAnswer
		if err := json.Unmarshal(body, &r); err != nil {
			return fmt.Errorf("unreadable answer: %w", err)
		}
		if r.TotalResults != 1 || len(r.Resources) != 1 || r.Resources[0].ID != id {
			return fmt.Errorf("want exactly user %s", id)
		}
		return nil
	}
}

// listed checks a page of a listing of total resources.
func listed(total, items int) func([]byte) error {
	return func(body []byte) error {
		var r listAnswer
		if err := json.Unmarshal(body, &r); err != nil {
			return fmt.Errorf("unreadable answer: %w", err)
		}
		if r.TotalResults != total || r.ItemsPerPage != items || len(r.Resources) != items {
			return fmt.Errorf("want totalResults %d and %d resources", total, items)
		}
		return nil
	}
}

// hasMembers checks a group's member count; -1 wants no members attribute
// at all.
func hasMembers(want int) func([]byte) error {
	return func(body []byte) error {
		var g struct {
			Members *[]struct {
				Value string `json:"value"`
			} `json:"members"`
		}
		if err := json.Unmarshal(body, &g); err != nil {
			return fmt.Errorf("unreadable answer: %w", err)
		}
		switch {
		case want < 0 && g.Members != nil:
			return errors.New("members were not excluded")
		case want >= 0 && (g.Members == nil || len(*g.Members) != want):
			return fmt.Errorf("want %d members", want)
		}
		return nil
	}
}
