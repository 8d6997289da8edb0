// Package suggest finds the word a person most likely meant, for the
// "did you mean" of an error: a mistyped config key, audit event type or
// command.
package suggest

import "strings"

// Closest is the candidate nearest to s, or "" when none is near enough to
// be what was meant: the same but for case, dashes and underscores, one
// that s begins (of four letters or more), or one fewer edits away than a
// third of s's length plus one.
func Closest(s string, candidates []string) string {
	norm := func(s string) string { return strings.NewReplacer("-", "", "_", "").Replace(strings.ToLower(s)) }
	best, bestD := "", len(s)/3+1
	for _, c := range candidates {
		if norm(c) == norm(s) || (len(s) >= 4 && strings.HasPrefix(c, s)) {
			return c
		}
		if d := Distance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// Distance is the Levenshtein distance between a and b, in bytes.
func Distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
