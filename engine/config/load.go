package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"gopkg.in/yaml.v3"
)

var (
	processKeys = []string{"cmd", "machine", "docker", "ready_check", "persistent", "session", "depends",
		"variants", "force_sigquit", "env", "cwd", "ready_timeout", "ready_period", "stop_timeout",
		"restart", "restart_delay", "restart_delay_max", "max_restarts", "restart_window", "restart_dependants",
		"log_max_size", "log_keep"}
	contextKeys = []string{"session", "params", ".defines", "log_dir", "plugins", "env", "cwd",
		"ready_timeout", "ready_period", "stop_timeout",
		"restart", "restart_delay", "restart_delay_max", "max_restarts", "restart_window", "restart_dependants",
		"log_max_size", "log_keep"}
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
	visits int
	// merged memoises each mapping's merged entries (see pairsDepth).
	merged   map[*yaml.Node]mergedMap
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
	if line := secondDocument(data); line > 0 {
		return nil, Errors{{Pos: Pos{File: file, Line: line}, Msg: "a second YAML document starts here: launcher reads one document per config",
			Hint: "remove the `---` (merge the documents), or split them into two configs"}}
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

// secondDocument returns the line where a second YAML document starts (0
// when there is none): yaml.Unmarshal reads the first and ignores the rest
// without a word.
func secondDocument(data []byte) int {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var first, second yaml.Node
	if dec.Decode(&first) != nil {
		return 0
	}
	if err := dec.Decode(&second); err != nil {
		return 0
	}
	if len(second.Content) == 0 {
		return 0 // a trailing `---` holds nothing
	}
	line := second.Content[0].Line
	// Point at the `---` that opens it, when it is on a line of its own.
	// YAML counts a lone CR as a line break too.
	lines := strings.Split(strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(string(data)), "\n")
	for i := min(line-1, len(lines)); i >= 1; i-- {
		t := strings.TrimSpace(lines[i-1])
		if strings.HasPrefix(t, "---") {
			return i
		}
		if t != "" && !strings.HasPrefix(t, "#") {
			break
		}
	}
	return line
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
			if l.restartKey(p.k, p.v, &cfg.Defaults.restart, "context."+p.k.Value) {
				break
			}
			if l.logKey(p.k, p.v, &cfg.Defaults.log, "context."+p.k.Value) {
				break
			}
			l.unknownContextKey(p.k)
		}
	}
	if !hasSession {
		l.errs.add(l.pos(n), "add `session: NAME` under context", "configuration requires context.session")
	}
}

// unknownContextKey refuses a key launcher does not read under context:
// a process key there (machine, docker…) would silently apply to no
// process, and a typo of a context key would silently do nothing. Anchor
// holders (keys starting with a dot, like .defines) and keys other tools
// read are accepted.
func (l *loader) unknownContextKey(k *yaml.Node) {
	switch {
	case strings.HasPrefix(k.Value, "."), knownForeignKeys[k.Value]:
		return
	case contains(processKeys, k.Value):
		l.errs.add(l.pos(k), fmt.Sprintf("context sets no default %[1]s: set %[1]s on each process (an anchor saves repeating it: `.defines: [&pc user@host]`, then `%[1]s: *pc`)", k.Value),
			"context: %q is a process key, not a context key", k.Value)
	default:
		hint := "keys launcher reads under context: " + strings.Join(contextKeys, ", ") + " (anchors go under .defines)"
		if s := suggest(k.Value, contextKeys); s != "" {
			hint = fmt.Sprintf("did you mean %q?", s)
		}
		l.errs.add(l.pos(k), hint, "context: unknown key %q", k.Value)
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
