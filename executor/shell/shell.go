// Package shell quotes arguments for POSIX shells, so that a command line sent
// to a remote login shell (or to tmux's `sh -c`) reaches the program byte for
// byte. It is the only place in launcher where shell text is built.
package shell

import "strings"

// Quote returns s as one POSIX shell word. Words made only of safe characters
// are returned as is; anything else is single-quoted, each embedded single
// quote closing the quotes, adding an escaped quote and reopening them. The
// empty string becomes a pair of single quotes.
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	if isSafe(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Join quotes every argument and joins them with spaces: the result, parsed
// by a POSIX shell, gives back exactly args.
func Join(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(Quote(a))
	}
	return b.String()
}

func isSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == '/' || c == ':' || c == ',' || c == '+' || c == '@' || c == '%':
		default:
			return false
		}
	}
	// A leading '~' would be expanded; '=' in the first word could be an
	// assignment: neither can occur (not in the safe set).
	return true
}
