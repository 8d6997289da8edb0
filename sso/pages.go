package sso

import (
	"html/template"
	"net/http"
)

// The browser side is two small pages: the code confirmation with the
// sign-in buttons, and a message at the end. They load nothing from
// elsewhere, so a strict Content-Security-Policy holds.

type devicePageData struct {
	UserCode string
	Client   string
	Valid    bool
	Error    string
	SAML     bool
	OIDC     bool
}

const pageStyle = `<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}
code{font-size:1.6rem;letter-spacing:.15rem}button{font-size:1rem;padding:.6rem 1.2rem;margin:.3rem 0;cursor:pointer}
.err{color:#a00}</style>`

var devicePageTemplate = template.Must(template.New("device").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>keygate sign-in</title>` + pageStyle + `</head><body>
<h1>Sign in to keygate</h1>
{{if .Error}}<p class="err">{{.Error}}</p>{{end}}
{{if .Valid}}
<p>Check that this code is the one <b>keygate login</b> shows{{if .Client}} on <b>{{.Client}}</b>{{end}}:</p>
<p><code id="user-code">{{.UserCode}}</code></p>
<p>If it is not, close this page: someone else is trying to sign in as you.</p>
<form method="post" action="/device/start">
<input type="hidden" name="user_code" value="{{.UserCode}}">
{{if .SAML}}<p><button type="submit" name="method" value="saml" id="signin-saml">Continue with SAML single sign-on</button></p>{{end}}
{{if .OIDC}}<p><button type="submit" name="method" value="oidc" id="signin-oidc">Continue with OpenID Connect</button></p>{{end}}
{{if not (or .SAML .OIDC)}}<p class="err">No sign-in method is configured on this keygate server.</p>{{end}}
</form>
{{else}}
<form method="get" action="/device">
<p><label>Code shown by <b>keygate login</b>: <input name="user_code" autocomplete="off" autofocus></label></p>
<p><button type="submit">Continue</button></p>
</form>
{{end}}
</body></html>`))

type messageData struct {
	Title string
	Text  string
	// Back, when set, is a local path to start again from (the portal),
	// shown as a link with BackText.
	Back     string
	BackText string
}

var messageTemplate = template.Must(template.New("message").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>` + pageStyle + `</head><body>
<h1 id="title">{{.Title}}</h1><p id="text">{{.Text}}</p>
{{if .Back}}<p><a id="back" href="{{.Back}}">{{.BackText}}</a></p>{{end}}</body></html>`))

func renderPage(w http.ResponseWriter, status int, t *template.Template, data any) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http:; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: the user code in the URL stays out of
	// the Referer that the identity provider sees either way, but under
	// no-referrer browsers send "Origin: null" with the page's own form
	// post, which /device/start must refuse.
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	t.Execute(w, data)
}

func (s *Service) message(w http.ResponseWriter, status int, title, text string) {
	renderPage(w, status, messageTemplate, messageData{Title: title, Text: text})
}
