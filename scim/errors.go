package scim

import (
	"fmt"
	"net/http"
)

// scimTypes of RFC 7644 §3.12.
const (
	invalidFilter = "invalidFilter"
	tooMany       = "tooMany"
	uniqueness    = "uniqueness"
	mutability    = "mutability"
	invalidSyntax = "invalidSyntax"
	invalidPath   = "invalidPath"
	noTarget      = "noTarget"
	invalidValue  = "invalidValue"
)

// Error is a SCIM error: an HTTP status, an optional scimType and a detail
// that is safe to show the client.
type Error struct {
	Status   int
	ScimType string
	Detail   string
}

func (e *Error) Error() string {
	if e.ScimType != "" {
		return fmt.Sprintf("%d %s: %s", e.Status, e.ScimType, e.Detail)
	}
	return fmt.Sprintf("%d: %s", e.Status, e.Detail)
}

func errorf(status int, scimType, format string, args ...any) *Error {
	return &Error{Status: status, ScimType: scimType, Detail: fmt.Sprintf(format, args...)}
}

func badValue(format string, args ...any) *Error {
	return errorf(http.StatusBadRequest, invalidValue, format, args...)
}

func badPath(format string, args ...any) *Error {
	return errorf(http.StatusBadRequest, invalidPath, format, args...)
}

func badFilter(format string, args ...any) *Error {
	return errorf(http.StatusBadRequest, invalidFilter, format, args...)
}

func notFound(format string, args ...any) *Error {
	return errorf(http.StatusNotFound, "", format, args...)
}

// errorBody is the JSON of an error response. RFC 7644 gives status as a
// string.
type errorBody struct {
	Schemas  []string `json:"schemas"`
	Status   string   `json:"status"`
	ScimType string   `json:"scimType,omitempty"`
	Detail   string   `json:"detail"`
}

func (e *Error) body() errorBody {
	return errorBody{Schemas: []string{messageError}, Status: fmt.Sprint(e.Status), ScimType: e.ScimType, Detail: e.Detail}
}
