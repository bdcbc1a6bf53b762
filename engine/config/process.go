package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ValidProcessName reports whether name can be a process name: it becomes a
// tmux window name and a file name.
func ValidProcessName(name string) bool {
	return len(name) <= MaxNameLen && processNameRe.MatchString(name) && name != "context"
}

func (l *loader) process(k, v *yaml.Node, cfg *Config) *Process {
	name := k.Value
	p := &Process{Name: name, Pos: l.pos(k), Persistent: true, Machine: "local", Extra: map[string]any{}}
	if !ValidProcessName(name) {
		l.errs.add(l.pos(k), "use letters, digits, _, . and - (it becomes a tmux window and a file name), at most 100 characters, not starting with . or -",
			"%q is not a valid process name", name)
		return nil
	}
	v = resolve(v)
	if v.Kind != yaml.MappingNode {
		l.errs.add(l.pos(v), "write `cmd: ...` and the other keys under it", "process %q must be a mapping, not %s", name, kindName(v))
		return nil
	}
	hasCmd := false
	var readyTimeout, readyPeriod, stopTimeout *time.Duration
	var ownEnv []EnvVar
	var restart restartSpec
	var logs logSpec
	cwd, hasCwd := "", false
	for _, pr := range l.pairs(v) {
		what := fmt.Sprintf("process %q: %s", name, pr.k.Value)
		switch pr.k.Value {
		case "cmd":
			if s, ok := l.str(pr.v, what); ok {
				p.Cmd, p.CmdPos, hasCmd = s, l.pos(resolve(pr.v)), true
				if strings.TrimSpace(s) == "" {
					l.errs.add(l.pos(resolve(pr.v)), "", "process %q: cmd is empty", name)
				}
			} else {
				hasCmd = true
			}
		case "machine":
			if isNull(pr.v) {
				break
			}
			if s, ok := l.str(pr.v, what); ok {
				if err := CheckMachine(s); err != nil {
					l.errs.add(l.pos(resolve(pr.v)), "use local, user@host, user@host:port, host, or a Host alias from ~/.ssh/config", "process %q: %v", name, err)
				} else {
					p.Machine = s
				}
			}
		case "docker":
			if isNull(pr.v) {
				break
			}
			if s, ok := l.str(pr.v, what); ok {
				if !dockerNameOK(s) {
					l.errs.add(l.pos(resolve(pr.v)), "use the container's name or ID", "process %q: %q is not a valid container name", name, s)
				} else {
					p.Docker = s
				}
			}
		case "ready_check":
			p.ReadyCheck = l.readyCheck(pr.v, name)
		case "persistent":
			p.Persistent, _ = l.boolean(pr.v, what)
		case "session":
			if isNull(pr.v) {
				break
			}
			if s, ok := l.str(pr.v, what); ok && l.sessionName(resolve(pr.v), s, what) {
				p.Session = s
			}
		case "depends":
			l.depends(pr.v, p)
		case "variants":
			p.Variants = l.variants(pr.v, name)
		case "force_sigquit":
			p.ForceSigquit, _ = l.boolean(pr.v, what)
		case "env":
			ownEnv = l.envMap(pr.v, what)
		case "cwd":
			cwd, hasCwd = l.str(pr.v, what)
		case "ready_timeout":
			d, ok := l.duration(pr.v, what)
			if ok {
				readyTimeout = &d
			}
		case "ready_period":
			d, ok := l.duration(pr.v, what)
			if ok {
				readyPeriod = &d
			}
		case "stop_timeout":
			d, ok := l.duration(pr.v, what)
			if ok {
				stopTimeout = &d
			}
		default:
			if l.restartKey(pr.k, pr.v, &restart, what) {
				break
			}
			if l.logKey(pr.k, pr.v, &logs, what) {
				break
			}
			l.unknownKey(pr.k, processKeys, fmt.Sprintf("process %q", name))
			p.Extra[pr.k.Value] = plain(pr.v)
		}
	}
	if !hasCmd {
		l.errs.add(l.pos(k), "add `cmd: <shell command>`", "process %q requires cmd", name)
	}
	if p.Session == "" {
		p.Session = cfg.Session
	}
	p.Env = mergeEnv(cfg.Defaults.Env, ownEnv)
	p.Cwd = cfg.Defaults.Cwd
	if hasCwd {
		p.Cwd = cwd
	}
	p.ReadyTimeout = pick(readyTimeout, cfg.Defaults.ReadyTimeout)
	p.ReadyPeriod = pick(readyPeriod, cfg.Defaults.ReadyPeriod)
	p.StopTimeout = pick(stopTimeout, cfg.Defaults.StopTimeout)
	if p.StopTimeout == 0 {
		p.StopTimeout = DefaultStopTimeout
	}
	p.Restart = restart.policy(cfg.Defaults.restart.policy(defaultRestart()))
	p.Log = logs.rotation(cfg.Defaults.log.rotation(defaultLogRotation()))
	l.checkRestart(p)
	return p
}

func pick(own *time.Duration, def time.Duration) time.Duration {
	if own != nil {
		return *own
	}
	return def
}

func mergeEnv(base, own []EnvVar) []EnvVar {
	out := append([]EnvVar(nil), base...)
	for _, e := range own {
		replaced := false
		for i := range out {
			if out[i].Name == e.Name {
				out[i] = e
				replaced = true
			}
		}
		if !replaced {
			out = append(out, e)
		}
	}
	return out
}

func dockerNameOK(s string) bool {
	if s == "" || len(s) > 256 || strings.HasPrefix(s, "-") {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			return false
		}
	}
	return true
}

// CheckMachine validates the form of a machine string: local, user@host,
// user@host:port, host, host:port, or an ssh_config alias.
func CheckMachine(s string) error {
	if IsLocal(s) {
		return nil
	}
	if strings.TrimSpace(s) != s || s == "" || strings.ContainsAny(s, " \t\n'\"`$;&|<>()\\") || strings.HasPrefix(s, "-") {
		return fmt.Errorf("machine %q is not a valid host", s)
	}
	host := s
	if i := strings.LastIndex(s, "@"); i >= 0 {
		if i == 0 || i == len(s)-1 {
			return fmt.Errorf("machine %q: a remote machine must use the user@host or user@host:port form", s)
		}
		host = s[i+1:]
	}
	if strings.HasPrefix(host, "[") { // [::1]:22
		end := strings.Index(host, "]")
		if end < 0 {
			return fmt.Errorf("machine %q: unterminated [ in the host", s)
		}
		rest := host[end+1:]
		if rest == "" {
			return nil
		}
		if !strings.HasPrefix(rest, ":") {
			return fmt.Errorf("machine %q: unexpected text after ]", s)
		}
		return checkPort(s, rest[1:])
	}
	if strings.Count(host, ":") == 1 {
		return checkPort(s, host[strings.Index(host, ":")+1:])
	}
	return nil
}

func checkPort(s, port string) error {
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("machine %q: the port %q is not a number from 1 to 65535", s, port)
	}
	return nil
}

func (l *loader) depends(n *yaml.Node, p *Process) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	add := func(it *yaml.Node) {
		it = resolve(it)
		if s, ok := l.str(it, fmt.Sprintf("process %q: depends entry", p.Name)); ok {
			for _, d := range p.Depends {
				if d == s {
					return
				}
			}
			p.Depends = append(p.Depends, s)
			p.DependsPos = append(p.DependsPos, l.pos(it))
		}
	}
	switch n.Kind {
	case yaml.SequenceNode:
		for _, it := range n.Content {
			add(it)
		}
	case yaml.ScalarNode:
		add(n) // one name: accepted as a list of one
	default:
		l.errs.add(l.pos(n), "write a list of process names", "process %q: depends must be a list, not %s", p.Name, kindName(n))
	}
}

func (l *loader) readyCheck(n *yaml.Node, proc string) *ReadyCheck {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	rc := &ReadyCheck{Pos: l.pos(n)}
	switch n.Kind {
	case yaml.ScalarNode:
		rc.Cmd = n.Value
		if strings.TrimSpace(rc.Cmd) == "" {
			l.errs.add(l.pos(n), "remove the key or give a command", "process %q: ready_check is empty", proc)
			return nil
		}
		return rc
	case yaml.MappingNode:
		for _, p := range l.pairs(n) {
			if p.k.Value == "check" {
				if s, ok := l.str(p.v, fmt.Sprintf("process %q: ready_check.check", proc)); ok {
					rc.Kind = s
				}
				continue
			}
			v := resolve(p.v)
			if v.Kind != yaml.ScalarNode {
				l.errs.add(l.pos(v), "", "process %q: ready_check option %q must be a single value, not %s", proc, p.k.Value, kindName(v))
				continue
			}
			rc.Options = append(rc.Options, Option{Name: p.k.Value, Value: plain(v), Pos: l.pos(v)})
		}
		if rc.Kind == "" {
			l.errs.add(l.pos(n), "write `ready_check: {check: tcp, port: 1234}` or a shell command", "process %q: ready_check mapping needs a `check` kind", proc)
			return nil
		}
		return rc
	}
	l.errs.add(l.pos(n), "give a shell command or {check: KIND, ...}", "process %q: ready_check must be a command, not %s", proc, kindName(n))
	return nil
}

func (l *loader) variants(n *yaml.Node, proc string) []*Variant {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		l.errs.add(l.pos(n), "write `name: {cmd: ...}` entries", "process %q: variants must be a mapping, not %s", proc, kindName(n))
		return nil
	}
	var out []*Variant
	for _, p := range l.pairs(n) {
		v := &Variant{Name: p.k.Value, Pos: l.pos(p.k)}
		body := resolve(p.v)
		switch {
		case isNull(body) || body.Kind == yaml.MappingNode:
			if ch := l.choice(p.k.Value, p.k, body, proc); ch != nil {
				v.Choices = []*Choice{ch}
			}
		case body.Kind == yaml.SequenceNode:
			v.Group = true
			for _, it := range body.Content {
				it = resolve(it)
				if it.Kind != yaml.MappingNode || len(it.Content) != 2 {
					l.errs.add(l.pos(it), "write `- choice: {cmd: ..., params: {...}}`", "process %q: variant group %q entries must contain one choice", proc, v.Name)
					continue
				}
				if ch := l.choice(it.Content[0].Value, it.Content[0], resolve(it.Content[1]), proc); ch != nil {
					v.Choices = append(v.Choices, ch)
				}
			}
		default:
			l.errs.add(l.pos(body), "use a mapping (flag) or a list of choices (group)", "process %q: variant %q must be a mapping or a list, not %s", proc, v.Name, kindName(body))
			continue
		}
		out = append(out, v)
	}
	return out
}

func (l *loader) choice(name string, k, body *yaml.Node, proc string) *Choice {
	ch := &Choice{Name: name, Pos: l.pos(k)}
	if isNull(body) {
		return ch
	}
	if body.Kind != yaml.MappingNode {
		l.errs.add(l.pos(body), "", "process %q: variant choice %q must be a mapping, not %s", proc, name, kindName(body))
		return nil
	}
	for _, p := range l.pairs(body) {
		switch p.k.Value {
		case "cmd":
			if s, ok := l.str(p.v, fmt.Sprintf("process %q: variant %q cmd", proc, name)); ok {
				ch.Cmd, ch.HasCmd = s, true
			}
		case "params":
			ch.Params = l.params(p.v, fmt.Sprintf("process %q: variant %q params", proc, name))
		default:
			if s := suggest(p.k.Value, []string{"cmd", "params"}); s != "" {
				l.errs.add(l.pos(p.k), fmt.Sprintf("did you mean %q?", s), "process %q: variant %q: unknown key %q", proc, name, p.k.Value)
			} else {
				l.errs.add(l.pos(p.k), "a choice has only cmd and params", "process %q: variant %q: unknown key %q", proc, name, p.k.Value)
			}
		}
	}
	return ch
}

// checkGraph validates depends targets and finds cycles.
func (l *loader) checkGraph(cfg *Config) {
	names := cfg.Names()
	for _, p := range cfg.Processes {
		for i, d := range p.Depends {
			if d == p.Name {
				l.errs.add(p.DependsPos[i], "remove it", "process %q depends on itself", p.Name)
				continue
			}
			if cfg.byName[d] == nil {
				hint := "known processes: " + strings.Join(names, ", ")
				if s := suggest(d, names); s != "" {
					hint = fmt.Sprintf("did you mean %q?", s)
				}
				l.errs.add(p.DependsPos[i], hint, "process %q depends on unknown process %q", p.Name, d)
			}
		}
	}
	// Cycle detection with a colour DFS, reporting each cycle once.
	const (
		white = iota
		grey
		black
	)
	colour := map[string]int{}
	var stack []string
	var visit func(p *Process)
	visit = func(p *Process) {
		colour[p.Name] = grey
		stack = append(stack, p.Name)
		for i, d := range p.Depends {
			q := cfg.byName[d]
			if q == nil || q == p {
				continue
			}
			switch colour[d] {
			case white:
				visit(q)
			case grey:
				start := 0
				for j, s := range stack {
					if s == d {
						start = j
					}
				}
				cycle := append(append([]string{}, stack[start:]...), d)
				l.errs.add(p.DependsPos[i], "remove one of these depends entries", "dependency cycle: %s", strings.Join(cycle, " -> "))
			}
		}
		stack = stack[:len(stack)-1]
		colour[p.Name] = black
	}
	for _, p := range cfg.Processes {
		if colour[p.Name] == white {
			visit(p)
		}
	}
}
