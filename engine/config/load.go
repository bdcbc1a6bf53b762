package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
)

var (
	processKeys = []string{"cmd", "machine", "docker", "ready_check", "persistent", "session", "depends",
		"variants", "force_sigquit", "env", "cwd", "ready_timeout", "ready_period", "stop_timeout"}
	contextKeys = []string{"session", "params", ".defines", "log_dir", "plugins", "env", "cwd",
		"ready_timeout", "ready_period", "stop_timeout"}
	// Keys that real concert_launcher configs carry for other tools (the GUI
	// server); they are kept and never mistaken for typos.
	knownForeignKeys = map[string]bool{"show_ui": true, "category": true, "_is_custom": true, "container": true}

	processNameRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
	sessionNameRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_-]*$`)
	envNameRe     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	paramNameRe   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// MaxNameLen bounds process and session names (they become file names).
const MaxNameLen = 100

// MaxConfigSize bounds a config file: larger input (or an endless one such
// as /dev/zero) is refused instead of filling memory.
const MaxConfigSize = 4 << 20

// maxMergeVisits bounds the key/value pairs that YAML merge keys (<<) may
// expand to: a few hundred bytes of nested aliases can otherwise describe
// billions of pairs (an "alias bomb").
const maxMergeVisits = 1 << 20

// Load reads and validates the config at path. Only regular files are read
// (a FIFO would block forever, a device never end), and at most
// MaxConfigSize bytes.
func Load(path string) (*Config, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, &Error{Pos: Pos{File: path}, Msg: "cannot read config: " + errText(err),
			Hint: "pass --config FILE, or set LAUNCHER_CONFIG"}
	}
	if !fi.Mode().IsRegular() {
		return nil, &Error{Pos: Pos{File: path}, Msg: fmt.Sprintf("cannot read config: it is %s, not a regular file", fileKind(fi.Mode())),
			Hint: "pass the path of a YAML file"}
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, &Error{Pos: Pos{File: path}, Msg: "cannot read config: " + errText(err),
			Hint: "pass --config FILE, or set LAUNCHER_CONFIG"}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigSize+1))
	if err != nil {
		return nil, &Error{Pos: Pos{File: path}, Msg: "cannot read config: " + errText(err)}
	}
	if len(data) > MaxConfigSize {
		return nil, &Error{Pos: Pos{File: path}, Msg: fmt.Sprintf("the config is larger than %d MiB", MaxConfigSize>>20),
			Hint: "split it, or check that --config names the right file"}
	}
	return Parse(path, data)
}

func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "a special file"
}

func errText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

type loader struct {
	file string
	errs Errors
	// visits counts pairs produced by merge keys, against maxMergeVisits.
	visits   int
	exploded bool
}

func (l *loader) pos(n *yaml.Node) Pos { return Pos{File: l.file, Line: n.Line, Col: n.Column} }

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// Parse validates a config held in memory; file names it in errors.
func Parse(file string, data []byte) (*Config, error) {
	l := &loader{file: file}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg := err.Error()
		p := Pos{File: file}
		if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
			p.Line, _ = strconv.Atoi(m[1])
			msg = m[2]
			// yaml.v3 reports parser errors at the 0-based line of the
			// construct being parsed; scanner errors are 1-based.
			if strings.HasPrefix(msg, "did not find expected") {
				p.Line++
			}
		} else {
			msg = strings.TrimPrefix(msg, "yaml: ")
		}
		return nil, Errors{{Pos: p, Msg: "invalid YAML: " + msg}}
	}
	if len(doc.Content) == 0 {
		return nil, Errors{{Pos: Pos{File: file, Line: 1}, Msg: "the config is empty",
			Hint: "it needs a context with a session, and one entry per process"}}
	}
	cfg := l.config(doc.Content[0])
	if l.exploded {
		// Everything after the explosion is noise.
		for _, e := range l.errs {
			if strings.Contains(e.Msg, "alias bomb") {
				return nil, Errors{e}
			}
		}
	}
	if len(l.errs) > 0 {
		return nil, l.errs.sorted()
	}
	return cfg, nil
}

// resolve follows aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

type pair struct{ k, v *yaml.Node }

// pairs returns the entries of a mapping with YAML merge keys (<<) applied:
// explicit keys win over merged ones, earlier merges over later ones.
func (l *loader) pairs(n *yaml.Node) []pair {
	return l.pairsDepth(n, 0)
}

func (l *loader) pairsDepth(n *yaml.Node, depth int) []pair {
	if l.exploded {
		return nil
	}
	n = resolve(n)
	if depth > 32 {
		l.errs.add(l.pos(n), "", "merge keys nest too deeply")
		return nil
	}
	var own []pair
	var merged []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == "<<" && k.Tag == "!!merge" {
			src := resolve(v)
			var sources []*yaml.Node
			switch src.Kind {
			case yaml.MappingNode:
				sources = []*yaml.Node{src}
			case yaml.SequenceNode:
				for _, s := range src.Content {
					sources = append(sources, resolve(s))
				}
			default:
				l.errs.add(l.pos(v), "", "a merge key (<<) needs a mapping or a list of mappings")
			}
			for _, s := range sources {
				if s.Kind != yaml.MappingNode {
					l.errs.add(l.pos(v), "", "a merge key (<<) needs a mapping or a list of mappings")
					continue
				}
				sub := l.pairsDepth(s, depth+1)
				if l.visits += len(sub); l.visits > maxMergeVisits {
					if !l.exploded {
						l.exploded = true
						l.errs.add(l.pos(v), "use fewer nested merge keys (<<) and aliases",
							"merge keys expand to more than %d entries (a YAML alias bomb?)", maxMergeVisits)
					}
					return nil
				}
				merged = append(merged, sub...)
			}
			continue
		}
		own = append(own, pair{k, v})
	}
	seen := map[string]bool{}
	var out []pair
	for _, p := range own {
		key := p.k.Value
		if seen[key] {
			l.errs.add(l.pos(p.k), "remove one of them", "key %q is defined twice", key)
			continue
		}
		seen[key] = true
		out = append(out, p)
	}
	for _, p := range merged {
		if !seen[p.k.Value] {
			seen[p.k.Value] = true
			out = append(out, p)
		}
	}
	return out
}

func kindName(n *yaml.Node) string {
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "null"
		case "!!bool":
			return "a boolean"
		case "!!int", "!!float":
			return "a number"
		}
		return fmt.Sprintf("the string %q", n.Value)
	}
	return "something else"
}

func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// str reads a scalar as text (numbers keep their written form).
func (l *loader) str(n *yaml.Node, what string) (string, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		l.errs.add(l.pos(n), "", "%s must be a string, not %s", what, kindName(n))
		return "", false
	}
	return n.Value, true
}

// boolean accepts YAML booleans, including the YAML 1.1 spellings PyYAML
// reads as booleans (yes/no/on/off), so concert_launcher configs load
// unchanged; a quoted "false" is a string and an error.
func (l *loader) boolean(n *yaml.Node, what string) (bool, bool) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) == 0 {
		switch strings.ToLower(n.Value) {
		case "true", "yes", "on":
			return true, true
		case "false", "no", "off":
			return false, true
		}
	}
	l.errs.add(l.pos(n), "write true or false, without quotes", "%s must be a boolean, not %s", what, kindName(n))
	return false, false
}

func (l *loader) duration(n *yaml.Node, what string) (time.Duration, bool) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && (n.Tag == "!!int" || n.Tag == "!!float") {
		f, err := strconv.ParseFloat(n.Value, 64)
		if err == nil && f >= 0 {
			return time.Duration(f * float64(time.Second)), true
		}
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		d, err := time.ParseDuration(n.Value)
		if err == nil && d >= 0 {
			return d, true
		}
	}
	l.errs.add(l.pos(n), "use a duration such as 30s, 500ms or 2m", "%s is not a valid duration: %s", what, kindName(n))
	return 0, false
}

func (l *loader) envMap(n *yaml.Node, what string) []EnvVar {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		l.errs.add(l.pos(n), "write NAME: value pairs", "%s must be a mapping, not %s", what, kindName(n))
		return nil
	}
	var out []EnvVar
	for _, p := range l.pairs(n) {
		if !envNameRe.MatchString(p.k.Value) {
			l.errs.add(l.pos(p.k), "use letters, digits and _ and do not start with a digit", "%s: %q is not a valid variable name", what, p.k.Value)
			continue
		}
		v, ok := l.scalarText(p.v, what+"."+p.k.Value)
		if ok {
			out = append(out, EnvVar{Name: p.k.Value, Value: v})
		}
	}
	return out
}

// scalarText reads a param-like value: any scalar, as written; null is "".
func (l *loader) scalarText(n *yaml.Node, what string) (string, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode {
		l.errs.add(l.pos(n), "quote it if it is meant as text", "%s must be a single value, not %s", what, kindName(n))
		return "", false
	}
	if n.Tag == "!!null" {
		return "", true
	}
	return n.Value, true
}

func (l *loader) params(n *yaml.Node, what string) []Param {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		l.errs.add(l.pos(n), "write name: value pairs", "%s must be a mapping, not %s", what, kindName(n))
		return nil
	}
	var out []Param
	for _, p := range l.pairs(n) {
		if !paramNameRe.MatchString(p.k.Value) {
			l.errs.add(l.pos(p.k), "use letters, digits and _", "%s: %q is not a valid parameter name", what, p.k.Value)
			continue
		}
		v, ok := l.scalarText(p.v, fmt.Sprintf("%s.%s", what, p.k.Value))
		if ok {
			out = append(out, Param{Name: p.k.Value, Value: v, Pos: l.pos(p.v)})
		}
	}
	return out
}

func (l *loader) unknownKey(k *yaml.Node, known []string, where string) {
	if knownForeignKeys[k.Value] {
		return
	}
	if s := suggest(k.Value, known); s != "" {
		l.errs.add(l.pos(k), fmt.Sprintf("did you mean %q?", s), "%s: unknown key %q", where, k.Value)
	}
	// Other unknown keys belong to other tools and are ignored.
}

func (l *loader) config(root *yaml.Node) *Config {
	root = resolve(root)
	cfg := &Config{File: l.file, byName: map[string]*Process{}}
	if root.Kind != yaml.MappingNode {
		l.errs.add(l.pos(root), "start with `context:` and one entry per process", "the configuration root must be a mapping, not %s", kindName(root))
		return cfg
	}
	var ctxNode *yaml.Node
	var procPairs []pair
	for _, p := range l.pairs(root) {
		switch {
		case p.k.Value == "context":
			ctxNode = p.v
		case strings.HasPrefix(p.k.Value, "."):
			// Anchor holders such as `.defines:` at the top level.
		default:
			procPairs = append(procPairs, p)
		}
	}
	if ctxNode == nil {
		l.errs.add(Pos{File: l.file, Line: root.Line, Col: root.Column}, "add `context: {session: NAME}`", "configuration requires context.session")
	} else {
		l.context(ctxNode, cfg)
	}
	for _, p := range procPairs {
		if pr := l.process(p.k, p.v, cfg); pr != nil {
			cfg.Processes = append(cfg.Processes, pr)
			cfg.byName[pr.Name] = pr
		}
	}
	l.checkGraph(cfg)
	return cfg
}

func (l *loader) context(n *yaml.Node, cfg *Config) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		l.errs.add(l.pos(n), "write `context: {session: NAME}`", "context must be a mapping, not %s", kindName(n))
		return
	}
	hasSession := false
	for _, p := range l.pairs(n) {
		switch p.k.Value {
		case "session":
			if s, ok := l.str(p.v, "context.session"); ok {
				hasSession = true
				if l.sessionName(p.v, s, "context.session") {
					cfg.Session = s
				}
			}
		case "params":
			cfg.Params = l.params(p.v, "context.params")
		case ".defines", "defines":
		case "log_dir":
			if s, ok := l.str(p.v, "context.log_dir"); ok {
				if !strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "~/") && s != "~" {
					l.errs.add(l.pos(p.v), "write an absolute path or one starting with ~/", "context.log_dir %q is relative", s)
				} else {
					cfg.LogDir = s
				}
			}
		case "plugins":
			cfg.Plugins = l.plugins(p.v)
		case "env":
			cfg.Defaults.Env = l.envMap(p.v, "context.env")
		case "cwd":
			cfg.Defaults.Cwd, _ = l.str(p.v, "context.cwd")
		case "ready_timeout":
			cfg.Defaults.ReadyTimeout, _ = l.duration(p.v, "context.ready_timeout")
		case "ready_period":
			cfg.Defaults.ReadyPeriod, _ = l.duration(p.v, "context.ready_period")
		case "stop_timeout":
			cfg.Defaults.StopTimeout, _ = l.duration(p.v, "context.stop_timeout")
		default:
			l.unknownKey(p.k, contextKeys, "context")
		}
	}
	if !hasSession {
		l.errs.add(l.pos(n), "add `session: NAME` under context", "configuration requires context.session")
	}
}

func (l *loader) plugins(n *yaml.Node) []string {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		l.errs.add(l.pos(n), "write a list of Lua files", "context.plugins must be a list, not %s", kindName(n))
		return nil
	}
	var out []string
	for _, it := range n.Content {
		if s, ok := l.str(it, "context.plugins entry"); ok {
			if !filepath.IsAbs(s) {
				s = filepath.Join(filepath.Dir(l.file), s)
			}
			out = append(out, s)
		}
	}
	return out
}

func (l *loader) sessionName(n *yaml.Node, s, what string) bool {
	if len(s) > MaxNameLen || !sessionNameRe.MatchString(s) {
		l.errs.add(l.pos(n), "use letters, digits, _ and - (tmux forbids . and : in session names)", "%s %q is not a valid session name", what, s)
		return false
	}
	return true
}

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

// plain converts a node to a Go value for Extra and check options.
func plain(n *yaml.Node) any {
	n = resolve(n)
	var v any
	if err := n.Decode(&v); err != nil {
		return n.Value
	}
	return v
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
