package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/keygate/keygate/api"
)

func userPath(name string) string  { return "/v1/admin/users/" + url.PathEscape(name) }
func groupPath(name string) string { return "/v1/admin/groups/" + url.PathEscape(name) }

// ListUsers lists everyone, by name.
func (c *Client) ListUsers(ctx context.Context) ([]api.Person, error) {
	var out []api.Person
	err := c.do(ctx, http.MethodGet, "/v1/admin/users", nil, nil, &out)
	return out, err
}

// ShowUser describes one person.
func (c *Client) ShowUser(ctx context.Context, name string) (api.Person, error) {
	var out api.Person
	err := c.do(ctx, http.MethodGet, userPath(name), nil, nil, &out)
	return out, err
}

// DisableUser disables a person, ending their sign-in sessions.
func (c *Client) DisableUser(ctx context.Context, name string) (api.UserChange, error) {
	var out api.UserChange
	err := c.do(ctx, http.MethodPost, userPath(name)+"/disable", nil, nil, &out)
	return out, err
}

// EnableUser makes a disabled person active again.
func (c *Client) EnableUser(ctx context.Context, name string) (api.UserChange, error) {
	var out api.UserChange
	err := c.do(ctx, http.MethodPost, userPath(name)+"/enable", nil, nil, &out)
	return out, err
}

// DeleteUser removes a person.
func (c *Client) DeleteUser(ctx context.Context, name string) (api.UserChange, error) {
	var out api.UserChange
	err := c.do(ctx, http.MethodDelete, userPath(name), nil, nil, &out)
	return out, err
}

// RenameUser gives a person a new user name.
func (c *Client) RenameUser(ctx context.Context, name, newName string) (api.UserChange, error) {
	var out api.UserChange
	err := c.do(ctx, http.MethodPatch, userPath(name), nil, api.RenameRequest{Name: newName}, &out)
	return out, err
}

// ListGroups lists every group with its members, by name.
func (c *Client) ListGroups(ctx context.Context) ([]api.GroupInfo, error) {
	var out []api.GroupInfo
	err := c.do(ctx, http.MethodGet, "/v1/admin/groups", nil, nil, &out)
	return out, err
}

// ShowGroup describes one group and its members.
func (c *Client) ShowGroup(ctx context.Context, name string) (api.GroupInfo, error) {
	var out api.GroupInfo
	err := c.do(ctx, http.MethodGet, groupPath(name), nil, nil, &out)
	return out, err
}

// DeleteGroup deletes a group; one with members only when force is set,
// which removes them first.
func (c *Client) DeleteGroup(ctx context.Context, name string, force bool) (api.GroupChange, error) {
	var q url.Values
	if force {
		q = url.Values{"force": {"true"}}
	}
	var out api.GroupChange
	err := c.do(ctx, http.MethodDelete, groupPath(name), q, nil, &out)
	return out, err
}

// RenameGroup gives a group a new name.
func (c *Client) RenameGroup(ctx context.Context, name, newName string) (api.GroupChange, error) {
	var out api.GroupChange
	err := c.do(ctx, http.MethodPatch, groupPath(name), nil, api.RenameRequest{Name: newName}, &out)
	return out, err
}

// Databases lists the databases and levels the signed-in person may use.
func (c *Client) Databases(ctx context.Context) ([]api.DatabaseAccess, error) {
	var out []api.DatabaseAccess
	err := c.do(ctx, http.MethodGet, "/v1/databases", nil, nil, &out)
	return out, err
}
