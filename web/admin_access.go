package web

import (
	"cmp"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/api"
	"github.com/keygate/keygate/client"
)

// durations is a measure of the report as a page shows it.
type durations struct {
	api.Durations
	P50, P99, Max, Target string
	// Over says some measurements were above the target: the page warns
	// in words, not only in colour.
	Over bool
}

func showSeconds(s float64) string {
	return client.HumanDuration(time.Duration(s * float64(time.Second)))
}

func durationsOf(d api.Durations) durations {
	return durations{Durations: d, P50: showSeconds(d.P50Seconds), P99: showSeconds(d.P99Seconds),
		Max: showSeconds(d.MaxSeconds), Target: showSeconds(d.TargetSeconds),
		Over: d.OverTarget > 0 || (d.TargetSeconds > 0 && d.P99Seconds > d.TargetSeconds)}
}

// reportSummary is api.Report arranged for the posture page: the
// standing credentials split into keygate's own roles found able to log
// in, which must never happen, and the other logins.
type reportSummary struct {
	api.Report
	Standing      []api.StandingCredential
	Managed       []api.StandingCredential
	CredentialAge durations
	TimeToRevoke  durations
	FindingsCount int
}

func summarize(r api.Report) reportSummary {
	s := reportSummary{Report: r, CredentialAge: durationsOf(r.CredentialAge), TimeToRevoke: durationsOf(r.TimeToRevoke),
		FindingsCount: len(r.Findings.Findings)}
	for _, c := range r.Standing.Credentials {
		if c.Managed {
			s.Managed = append(s.Managed, c)
		} else {
			s.Standing = append(s.Standing, c)
		}
	}
	return s
}

type postureData struct {
	adminPage
	Since  string
	Report reportSummary
}

// adminPosture shows the seeds' measures over the window the form asks
// for: standing credentials now, credential age and time to revoke.
func (p *Portal) adminPosture(v *visit) (string, view, error) {
	since := cmp.Or(strings.TrimSpace(v.r.URL.Query().Get("since")), "24h")
	r, err := v.api.Report(v.r.Context(), since)
	if err != nil {
		return "", view{}, err
	}
	return "admin_posture", view{Title: "Posture", Data: postureData{adminPage: adminPage{Section: "posture"}, Since: since, Report: summarize(r)}}, nil
}

type accessData struct {
	adminPage
	api.AccessRules
}

// adminAccess shows the access rules in force as configured.
func (p *Portal) adminAccess(v *visit) (string, view, error) {
	rules, err := v.api.AccessRules(v.r.Context())
	if err != nil {
		return "", view{}, err
	}
	return "admin_access", view{Title: "Access rules", Data: accessData{adminPage: adminPage{Section: "access"}, AccessRules: rules}}, nil
}

// accessLevels are the levels the forms offer, least first.
var accessLevels = []string{"ro", "rw", "admin"}

type explainData struct {
	adminPage
	User, Database, Access string
	MFA                    bool
	Levels                 []string
	// Result is nil until the form names a person and a database.
	Result *api.Explanation
}

// adminExplain says whether a person may reach a database, and why, at
// each level.
func (p *Portal) adminExplain(v *visit) (string, view, error) {
	q := v.r.URL.Query()
	d := explainData{adminPage: adminPage{Section: "explain"}, Levels: accessLevels,
		User: strings.TrimSpace(q.Get("user")), Database: strings.TrimSpace(q.Get("database")), Access: q.Get("access"),
		MFA: q.Get("mfa") != ""}
	if d.User != "" && d.Database != "" {
		e, err := v.api.ExplainAccess(v.r.Context(), d.User, d.Database, d.Access, d.MFA)
		if err != nil {
			return "", view{}, err
		}
		d.Result = &e
	}
	return "admin_explain", view{Title: "Explain access", Data: d}, nil
}

type whoData struct {
	adminPage
	Database         string
	At, Since, Until string
	Result           *api.WhoAnswer
}

// adminWho answers who could reach a database (now or at a past moment)
// and who did connect to it over a window.
func (p *Portal) adminWho(v *visit) (string, view, error) {
	q := v.r.URL.Query()
	d := whoData{adminPage: adminPage{Section: "who"}, Database: strings.TrimSpace(q.Get("database")),
		At: q.Get("at"), Since: q.Get("since"), Until: q.Get("until")}
	if d.Database != "" {
		var times [3]time.Time
		for i, f := range []struct{ name, value string }{{"at", d.At}, {"since", d.Since}, {"until", d.Until}} {
			t, err := formTime(f.name, f.value)
			if err != nil {
				return "", view{}, err
			}
			times[i] = t
		}
		a, err := v.api.WhoCan(v.r.Context(), d.Database, times[0], times[1], times[2])
		if err != nil {
			return "", view{}, err
		}
		d.Result = &a
	}
	return "admin_who", view{Title: "Who can reach a database", Data: d}, nil
}

type reviewData struct {
	adminPage
	Holders []api.Holder
}

// review is the access review, by database then person.
func review(v *visit) ([]api.Holder, error) {
	list, err := v.api.Review(v.r.Context())
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(list, func(a, b api.Holder) int {
		return cmp.Or(cmp.Compare(a.Database, b.Database), cmp.Compare(a.User, b.User))
	})
	return list, nil
}

// adminReview shows everyone who could reach each database now, with the
// review's downloads.
func (p *Portal) adminReview(v *visit) (string, view, error) {
	list, err := review(v)
	if err != nil {
		return "", view{}, err
	}
	return "admin_review", view{Title: "Access review", Data: reviewData{adminPage: adminPage{Section: "review"}, Holders: list}}, nil
}

// downloadHeaders are a download's headers: the portal's own (no-store
// among them), with the file's type and name.
func downloadHeaders(w http.ResponseWriter, contentType, filename string) {
	securityHeaders(w.Header())
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Disposition", `attachment; filename="`+filename+`"`)
	w.Header().Set("Cache-Control", "no-store")
}

// spreadsheetSafe keeps a cell that a spreadsheet would run as a formula
// (names come from the identity provider) as text, with a leading '.
func spreadsheetSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// adminReviewCSV downloads the access review for a spreadsheet.
func (p *Portal) adminReviewCSV(v *visit) error {
	list, err := review(v)
	if err != nil {
		return err
	}
	downloadHeaders(v.w, "text/csv; charset=utf-8", "keygate-access-review.csv")
	cw := csv.NewWriter(v.w)
	cw.Write([]string{"user", "database", "access", "group", "permission_set", "require_mfa"})
	for _, h := range list {
		cw.Write([]string{spreadsheetSafe(h.User), spreadsheetSafe(h.Database), h.Access, spreadsheetSafe(h.Group),
			spreadsheetSafe(h.PermissionSet), strconv.FormatBool(h.RequireMFA)})
	}
	cw.Flush()
	return nil
}

// adminReviewJSON downloads the access review as the API answers it.
func (p *Portal) adminReviewJSON(v *visit) error {
	list, err := review(v)
	if err != nil {
		return err
	}
	if list == nil {
		list = []api.Holder{}
	}
	downloadHeaders(v.w, "application/json", "keygate-access-review.json")
	enc := json.NewEncoder(v.w)
	enc.SetIndent("", "  ")
	// The headers are out: a failure now is the browser's going away.
	enc.Encode(list)
	return nil
}

type findingsData struct {
	adminPage
	api.AccessFindings
}

// adminFindings lists the groups the group naming rule cannot use.
func (p *Portal) adminFindings(v *visit) (string, view, error) {
	f, err := v.api.AccessFindings(v.r.Context())
	if err != nil {
		return "", view{}, err
	}
	return "admin_findings", view{Title: "Naming rule findings", Data: findingsData{adminPage: adminPage{Section: "findings"}, AccessFindings: f}}, nil
}

// badRequest is a mistake in what the form asked, shown on the problem
// page in these words.
func badRequest(msg string) error { return &client.Error{Status: http.StatusBadRequest, Message: msg} }
