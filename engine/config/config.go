// Package config loads, validates and resolves launcher configurations: the
// concert_launcher YAML format (context, processes, variants, params) plus
// launcher's own keys. Every problem is reported with file:line:column and
// what to do, all at once where possible.
package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Config is a loaded, validated configuration.
type Config struct {
	// File is the path the config was read from (as given).
	File string
	// Session is context.session: the default tmux session.
	Session string
	// Params are context.params in file order.
	Params []Param
	// LogDir is context.log_dir ("" = the per-user state directory).
	LogDir string
	// Plugins are context.plugins, resolved relative to the config file.
	Plugins []string
	// Defaults hold the context-level defaults of the per-process keys.
	Defaults Defaults
	// Processes in file order.
	Processes []*Process

	byName map[string]*Process
}

// Param is one named template value.
type Param struct {
	Name  string
	Value string
	Pos   Pos
}

// Defaults are context-level values for keys a process may override.
type Defaults struct {
	Env          []EnvVar
	Cwd          string
	ReadyTimeout time.Duration
	ReadyPeriod  time.Duration
	StopTimeout  time.Duration
	// restart is what context's restart keys set.
	restart restartSpec
	// log is what context's log rotation keys set.
	log logSpec
}

// EnvVar is one entry of an env map, in file order.
type EnvVar struct {
	Name  string
	Value string
}

// Process is one process entry.
type Process struct {
	Name    string
	Pos     Pos // of the entry's key
	Cmd     string
	CmdPos  Pos
	Machine string // "local" when absent
	Docker  string
	// ReadyCheck is nil when the process has none.
	ReadyCheck   *ReadyCheck
	Persistent   bool
	Session      string // resolved: the entry's session or context.session
	Depends      []string
	DependsPos   []Pos
	Variants     []*Variant
	ForceSigquit bool
	Env          []EnvVar // merged: context env, then the entry's
	Cwd          string
	ReadyTimeout time.Duration // 0: none
	ReadyPeriod  time.Duration // 0: the default back-off
	StopTimeout  time.Duration // 0: DefaultStopTimeout
	// Restart is the process's restart policy (context's keys, then its own).
	Restart Restart
	// Log is how its log rotates (context's keys, then its own).
	Log LogRotation
	// Extra holds keys launcher does not use (GUI metadata such as show_ui,
	// category): kept, never an error.
	Extra map[string]any
	// Custom: added at run time (WithCustom), not in the file.
	Custom bool
}

// DefaultStopTimeout bounds a graceful stop when the config sets none.
const DefaultStopTimeout = 10 * time.Second

// ReadyCheck is a shell command polled until it exits 0, or a named check
// kind (`{check: tcp, port: 11311}`) implemented by a plugin.
type ReadyCheck struct {
	Cmd     string
	Kind    string
	Options []Option
	Pos     Pos
}

// Option is one option of a check kind; Value is a string, int64, float64 or
// bool as written.
type Option struct {
	Name  string
	Value any
	Pos   Pos
}

// Variant is one entry of `variants:`: a flag (one choice named like the
// variant) or an option group (mutually exclusive choices).
type Variant struct {
	Name    string
	Pos     Pos
	Group   bool
	Choices []*Choice
}

// Choice is one selectable choice of a variant.
type Choice struct {
	Name   string
	Pos    Pos
	Cmd    string
	HasCmd bool
	Params []Param
}

// Process returns the named process, or nil.
func (c *Config) Process(name string) *Process { return c.byName[name] }

// Names returns the process names in file order.
func (c *Config) Names() []string {
	out := make([]string, len(c.Processes))
	for i, p := range c.Processes {
		out[i] = p.Name
	}
	return out
}

// Dependants returns the processes whose depends list name directly, in file
// order.
func (c *Config) Dependants(name string) []*Process {
	var out []*Process
	for _, p := range c.Processes {
		for _, d := range p.Depends {
			if d == name {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// Sessions returns every distinct session name used, context.session first.
func (c *Config) Sessions() []string {
	seen := map[string]bool{c.Session: true}
	out := []string{c.Session}
	for _, p := range c.Processes {
		if !seen[p.Session] {
			seen[p.Session] = true
			out = append(out, p.Session)
		}
	}
	return out
}

// ChoiceNames returns every variant choice name declared by procs, sorted.
func ChoiceNames(procs []*Process) []string {
	seen := map[string]bool{}
	for _, p := range procs {
		for _, v := range p.Variants {
			for _, ch := range v.Choices {
				seen[ch.Name] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// UnknownProcessError is returned for a process name the config lacks.
type UnknownProcessError struct {
	Name  string
	Known []string
}

func (e *UnknownProcessError) Error() string {
	msg := fmt.Sprintf("unknown process %q", e.Name)
	if s := suggest(e.Name, e.Known); s != "" {
		return msg + fmt.Sprintf(" (did you mean %q?)", s)
	}
	return msg + " (known processes: " + strings.Join(e.Known, ", ") + ")"
}

// Lookup returns the named process or an UnknownProcessError.
func (c *Config) Lookup(name string) (*Process, error) {
	if p := c.byName[name]; p != nil {
		return p, nil
	}
	return nil, &UnknownProcessError{Name: name, Known: c.Names()}
}

// Closure returns roots and every process they depend on, transitively, in
// file order.
func (c *Config) Closure(roots []string) ([]*Process, error) {
	in := map[string]bool{}
	var visit func(string) error
	visit = func(n string) error {
		if in[n] {
			return nil
		}
		p, err := c.Lookup(n)
		if err != nil {
			return err
		}
		in[n] = true
		for _, d := range p.Depends {
			if err := visit(d); err != nil {
				return err
			}
		}
		return nil
	}
	for _, r := range roots {
		if err := visit(r); err != nil {
			return nil, err
		}
	}
	var out []*Process
	for _, p := range c.Processes {
		if in[p.Name] {
			out = append(out, p)
		}
	}
	return out, nil
}

// Dir is the directory of the config file.
func (c *Config) Dir() string { return filepath.Dir(c.File) }

// IsLocal reports whether a machine string means this computer.
func IsLocal(machine string) bool { return machine == "" || machine == "local" }

// specHash identifies a rendered command, so that drift between the command
// running in a window and the one the config now renders can be noticed.
func specHash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
