package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/robotlauncher/launcher/executor/shell"
)

// Render replaces every {name} in tmpl by params[name], and every {name:q}
// by params[name] quoted as one shell word (for paths and other data that
// may hold spaces or shell syntax). {{ and }} are literal braces. Braces that do not hold an identifier ({print $1}, {a,b}) and shell
// parameter expansions (${HOME}) are left alone, so shell code needs no
// escaping. It returns the first missing parameter name, if any.
func Render(tmpl string, params map[string]string) (string, string) {
	return expand(tmpl, func(name string) (string, bool) {
		v, ok := params[name]
		return v, ok
	})
}

// Refs returns the parameter names tmpl refers to, as Render reads them.
func Refs(tmpl string) []string {
	var names []string
	_, _ = expand(tmpl, func(name string) (string, bool) {
		names = append(names, name)
		return "", true
	})
	return names
}

// expand is Render with a lookup function.
func expand(tmpl string, lookup func(name string) (string, bool)) (string, string) {
	var b strings.Builder
	b.Grow(len(tmpl))
	for i := 0; i < len(tmpl); i++ {
		c := tmpl[i]
		switch c {
		case '{':
			if i+1 < len(tmpl) && tmpl[i+1] == '{' {
				b.WriteByte('{')
				i++
				continue
			}
			if i > 0 && tmpl[i-1] == '$' {
				b.WriteByte(c)
				continue
			}
			end := identEnd(tmpl, i+1)
			quoted := end > i+1 && strings.HasPrefix(tmpl[end:], ":q}")
			if end > i+1 && (quoted || end < len(tmpl) && tmpl[end] == '}') {
				name := tmpl[i+1 : end]
				v, ok := lookup(name)
				if !ok {
					return "", name
				}
				if quoted {
					v = shell.Quote(v)
					end += 2
				}
				b.WriteString(v)
				i = end
				continue
			}
			b.WriteByte(c)
		case '}':
			if i+1 < len(tmpl) && tmpl[i+1] == '}' {
				i++
			}
			b.WriteByte('}')
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), ""
}

func identEnd(s string, i int) int {
	j := i
	for j < len(s) {
		c := s[j]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || (j > i && c >= '0' && c <= '9') {
			j++
			continue
		}
		break
	}
	return j
}

// Request is what an operation asks of the config: extra params (-p) and
// selected variant choices (-v).
type Request struct {
	Params   map[string]string
	Variants []string
}

// Resolved is a process ready to run: every template rendered.
type Resolved struct {
	Name         string            `json:"name"`
	Machine      string            `json:"machine"`
	Session      string            `json:"session"`
	Docker       string            `json:"docker,omitempty"`
	Cmd          string            `json:"cmd"`
	ReadyCheck   string            `json:"ready_check,omitempty"`
	CheckKind    string            `json:"ready_check_kind,omitempty"`
	CheckOptions map[string]any    `json:"ready_check_options,omitempty"`
	Persistent   bool              `json:"persistent"`
	Depends      []string          `json:"depends"`
	Env          []EnvVar          `json:"-"`
	EnvMap       map[string]string `json:"env,omitempty"`
	Cwd          string            `json:"cwd,omitempty"`
	ReadyTimeout Duration          `json:"ready_timeout,omitempty"`
	ReadyPeriod  Duration          `json:"ready_period,omitempty"`
	StopTimeout  Duration          `json:"stop_timeout"`
	ForceSigquit bool              `json:"force_sigquit,omitempty"`
	// Restart is the restart policy; nil when it is `no`.
	Restart *Restart `json:"restart,omitempty"`
	// LogRotation is how the process's log rotates.
	LogRotation
	Variants []string `json:"variants,omitempty"`
	Hash     string   `json:"hash"`
	Level    int      `json:"level"`
	// Request is what the operation asked (every variant and param of
	// it, not only those this process uses).
	Request Request `json:"-"`
	// Process is the config entry this was rendered from.
	Process *Process `json:"-"`
}

// Duration marshals as a Go duration string ("10s").
type Duration time.Duration

// MarshalText writes the duration as text.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Plan is the resolved processes of one operation, in start order: every
// process after all of its dependencies; Level is the depth in that order.
type Plan struct {
	Roots     []string    `json:"roots"`
	Processes []*Resolved `json:"processes"`
	byName    map[string]*Resolved
}

// Get returns the resolved process by name.
func (p *Plan) Get(name string) *Resolved { return p.byName[name] }

// checkParams refuses a requested param that no process of the operation
// uses (a typo of -p robot:=x would otherwise be ignored without a word).
func (c *Config) checkParams(procs []*Process, roots []string, req Request) error {
	if len(req.Params) == 0 {
		return nil
	}
	known := map[string]bool{"config_dir": true}
	for _, kv := range c.Params {
		known[kv.Name] = true
	}
	for _, p := range procs {
		for _, n := range p.paramNames() {
			known[n] = true
		}
	}
	var unknown []string
	for k := range req.Params {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	names := make([]string, 0, len(known))
	for k := range known {
		if k != "config_dir" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	hint := "no process of this operation uses parameters"
	if len(names) > 0 {
		hint = "the processes of this operation use: " + strings.Join(names, ", ")
		if s := suggest(unknown[0], names); s != "" {
			hint = fmt.Sprintf("did you mean %q? %s", s, hint)
		}
	}
	return &Error{Pos: Pos{File: c.File}, Msg: fmt.Sprintf("unknown parameter %s for %s", quoteList(unknown), strings.Join(roots, ", ")), Hint: hint}
}

// paramNames are the parameters p's templates and variants refer to.
func (p *Process) paramNames() []string {
	tmpls := []string{p.Cmd, p.Cwd}
	if p.ReadyCheck != nil {
		tmpls = append(tmpls, p.ReadyCheck.Cmd)
		for _, o := range p.ReadyCheck.Options {
			if s, ok := o.Value.(string); ok {
				tmpls = append(tmpls, s)
			}
		}
	}
	for _, e := range p.Env {
		tmpls = append(tmpls, e.Value)
	}
	var names []string
	for _, v := range p.Variants {
		for _, ch := range v.Choices {
			for _, n := range Refs(ch.Cmd) {
				if n != "cmd" { // {cmd} there is the process's command
					names = append(names, n)
				}
			}
			for _, kv := range ch.Params {
				names = append(names, kv.Name)
			}
		}
	}
	for _, t := range tmpls {
		names = append(names, Refs(t)...)
	}
	return names
}

// Resolve renders roots and their dependencies for one operation.
func (c *Config) Resolve(roots []string, req Request) (*Plan, error) {
	procs, err := c.Closure(roots)
	if err != nil {
		return nil, err
	}
	selected := map[string]bool{}
	for _, v := range req.Variants {
		selected[v] = true
	}
	if len(selected) > 0 {
		declared := ChoiceNames(procs)
		have := map[string]bool{}
		for _, n := range declared {
			have[n] = true
		}
		var unknown []string
		for _, v := range req.Variants {
			if !have[v] && !contains(unknown, v) {
				unknown = append(unknown, v)
			}
		}
		if len(unknown) > 0 {
			msg := fmt.Sprintf("unknown variant %s for %s", quoteList(unknown), strings.Join(roots, ", "))
			if len(declared) == 0 {
				return nil, &Error{Pos: Pos{File: c.File}, Msg: msg, Hint: "no process of this operation declares variants"}
			}
			hint := "choices that exist: " + strings.Join(declared, ", ")
			if s := suggest(unknown[0], declared); s != "" {
				hint = fmt.Sprintf("did you mean %q? choices that exist: %s", s, strings.Join(declared, ", "))
			}
			return nil, &Error{Pos: Pos{File: c.File}, Msg: msg, Hint: hint}
		}
	}
	if err := c.checkParams(procs, roots, req); err != nil {
		return nil, err
	}
	plan := &Plan{Roots: roots, byName: map[string]*Resolved{}}
	var errs Errors
	for _, p := range procs {
		r, err := c.resolveOne(p, req, selected)
		if err != nil {
			if e := (*Error)(nil); errors.As(err, &e) {
				errs = append(errs, e)
				continue
			}
			return nil, err
		}
		plan.byName[p.Name] = r
	}
	if len(errs) > 0 {
		return nil, errs.sorted()
	}
	// Start order: by depth (longest dependency chain), then file order.
	level := map[string]int{}
	var depth func(p *Process) int
	depth = func(p *Process) int {
		if l, ok := level[p.Name]; ok {
			return l
		}
		l := 0
		for _, d := range p.Depends {
			if dl := depth(c.byName[d]) + 1; dl > l {
				l = dl
			}
		}
		level[p.Name] = l
		return l
	}
	for _, p := range procs {
		r := plan.byName[p.Name]
		r.Level = depth(p)
		plan.Processes = append(plan.Processes, r)
	}
	sort.SliceStable(plan.Processes, func(i, j int) bool { return plan.Processes[i].Level < plan.Processes[j].Level })
	return plan, nil
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(q, ", ")
}

// ResolveOne renders p alone as an operation asking req would, without
// the checks of Resolve (a param no process uses, an unknown variant):
// what a run that req started would run under this config now.
func (c *Config) ResolveOne(p *Process, req Request) (*Resolved, error) {
	selected := map[string]bool{}
	for _, v := range req.Variants {
		selected[v] = true
	}
	return c.resolveOne(p, req, selected)
}

// resolveOne applies the selected variants to p and renders its templates.
func (c *Config) resolveOne(p *Process, req Request, selected map[string]bool) (*Resolved, error) {
	params := map[string]string{}
	// {config_dir}: the directory of the config file, for scripts beside it.
	if dir, err := filepath.Abs(filepath.Dir(c.File)); err == nil {
		params["config_dir"] = dir
	}
	for _, kv := range c.Params {
		params[kv.Name] = kv.Value
	}
	for k, v := range req.Params {
		params[k] = v
	}
	cmd := p.Cmd
	var applied []string
	for _, v := range p.Variants {
		var picked []*Choice
		for _, ch := range v.Choices {
			if selected[ch.Name] {
				picked = append(picked, ch)
			}
		}
		if len(picked) > 1 {
			names := make([]string, len(picked))
			for i, ch := range picked {
				names[i] = ch.Name
			}
			return nil, &Error{Pos: v.Pos, Msg: fmt.Sprintf("process %q: variant group %q selected more than once: %s", p.Name, v.Name, strings.Join(names, ", ")),
				Hint: "pick one choice of the group"}
		}
		if len(picked) == 0 {
			continue
		}
		ch := picked[0]
		applied = append(applied, ch.Name)
		if ch.HasCmd {
			cmd = strings.ReplaceAll(ch.Cmd, "{cmd}", cmd)
		}
		for _, kv := range ch.Params {
			params[kv.Name] = kv.Value
		}
	}
	render := func(tmpl string, what string, at Pos) (string, error) {
		out, missing := Render(tmpl, params)
		if missing != "" {
			return "", &Error{Pos: at, Msg: fmt.Sprintf("missing parameter %q for process %q (in %s)", missing, p.Name, what),
				Hint: fmt.Sprintf("set it under context.params, or pass -p %s:=VALUE", missing)}
		}
		return out, nil
	}
	r := &Resolved{Name: p.Name, Machine: p.Machine, Session: p.Session, Docker: p.Docker, Persistent: p.Persistent,
		Depends: append([]string{}, p.Depends...), ReadyTimeout: Duration(p.ReadyTimeout), ReadyPeriod: Duration(p.ReadyPeriod),
		StopTimeout: Duration(p.StopTimeout), ForceSigquit: p.ForceSigquit, Variants: applied, LogRotation: p.Log, Process: p,
		Request: req}
	if p.Restart.Enabled() {
		rp := p.Restart
		r.Restart = &rp
	}
	var err error
	if r.Cmd, err = render(cmd, "cmd", p.CmdPos); err != nil {
		return nil, err
	}
	if p.ReadyCheck != nil {
		if p.ReadyCheck.Kind != "" {
			r.CheckKind = p.ReadyCheck.Kind
			r.CheckOptions = map[string]any{}
			for _, o := range p.ReadyCheck.Options {
				v := o.Value
				if s, ok := v.(string); ok {
					if v, err = render(s, "ready_check."+o.Name, o.Pos); err != nil {
						return nil, err
					}
				}
				r.CheckOptions[o.Name] = v
			}
		} else if r.ReadyCheck, err = render(p.ReadyCheck.Cmd, "ready_check", p.ReadyCheck.Pos); err != nil {
			return nil, err
		}
	}
	for _, e := range p.Env {
		v, err := render(e.Value, "env."+e.Name, p.Pos)
		if err != nil {
			return nil, err
		}
		r.Env = append(r.Env, EnvVar{Name: e.Name, Value: v})
	}
	if len(r.Env) > 0 {
		r.EnvMap = map[string]string{}
		for _, e := range r.Env {
			r.EnvMap[e.Name] = e.Value
		}
	}
	if r.Cwd, err = render(p.Cwd, "cwd", p.Pos); err != nil {
		return nil, err
	}
	parts := []string{r.Cmd, r.Docker, r.Cwd}
	for _, e := range r.Env {
		parts = append(parts, e.Name+"="+e.Value)
	}
	r.Hash = specHash(parts...)
	return r, nil
}
