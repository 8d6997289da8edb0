package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

// logProblems are the warnings and errors a component logged during the
// benchmark: a gateway that misbehaves under load shows it here.
type logProblems struct {
	Count int `json:"count"`
	// First are the first few such lines.
	First []string `json:"first,omitempty"`
}

// componentLog is a log to scan for warnings and errors after the runs.
type componentLog struct {
	name string
	path string
	// markers are what a warning or worse looks like in this log.
	markers []string
	// benign are such lines that are expected.
	benign []string
}

// Markers of a warning or worse in each component's log.
var (
	keygateMarkers   = []string{"level=WARN", "level=ERROR"}
	pgbouncerMarkers = []string{" WARNING ", " ERROR ", " FATAL "}
	postgresMarkers  = []string{"WARNING:", "ERROR:", "FATAL:", "PANIC:"}
	mariadbMarkers   = []string{"[Warning]", "[ERROR]"}
	// localpg polls the server until it accepts connections.
	postgresBenign = []string{"the database system is starting up"}
)

// scan counts the lines of the log that hold one of its markers.
func (l componentLog) scan() (logProblems, error) {
	b, err := os.ReadFile(l.path)
	if err != nil {
		return logProblems{}, fmt.Errorf("scan %s log: %w", l.name, err)
	}
	var p logProblems
	for line := range strings.Lines(string(b)) {
		if slices.ContainsFunc(l.benign, func(s string) bool { return strings.Contains(line, s) }) {
			continue
		}
		for _, m := range l.markers {
			if strings.Contains(line, m) {
				p.Count++
				if len(p.First) < 5 {
					p.First = append(p.First, strings.TrimSpace(line))
				}
				break
			}
		}
	}
	return p, nil
}
