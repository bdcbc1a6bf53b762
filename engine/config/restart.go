package config

import (
	"time"

	"gopkg.in/yaml.v3"
)

// Restart policies (`restart: no | on-failure | always`), as roslaunch's
// respawn and systemd's Restart= give them. The loop that applies a policy
// runs beside the process on its machine, so it works with no launcher
// running; this is only its configuration.
const (
	RestartNo        = "no"
	RestartOnFailure = "on-failure"
	RestartAlways    = "always"
)

// Defaults of a restart policy's numbers when the config sets none.
const (
	DefaultRestartDelay = time.Second
	// MinRestartDelay is the shortest restart_delay: a smaller one (0s)
	// is raised to it, and doubles from there.
	MinRestartDelay        = 100 * time.Millisecond
	DefaultRestartDelayMax = 30 * time.Second
	DefaultMaxRestarts     = 5
	DefaultRestartWindow   = time.Minute
)

// Restart is a process's restart policy.
type Restart struct {
	// Mode is RestartNo, RestartOnFailure or RestartAlways.
	Mode string `json:"mode"`
	// Delay is the pause before the first restart in the window; each
	// further one doubles it, up to MaxDelay.
	Delay    Duration `json:"delay"`
	MaxDelay Duration `json:"delay_max"`
	// Max restarts within Window, after which the process is DEAD (0: no
	// limit).
	Max    int      `json:"max"`
	Window Duration `json:"window"`
	// Dependants: a restart also restarts the running processes that
	// depend on this one (done by a launcher that watches: serve).
	Dependants bool `json:"dependants,omitempty"`
}

// Enabled reports whether the policy ever restarts.
func (r Restart) Enabled() bool { return r.Mode == RestartOnFailure || r.Mode == RestartAlways }

// restartSpec is what one mapping (a process or context) sets.
type restartSpec struct {
	mode                    *string
	delay, maxDelay, window *time.Duration
	max                     *int
	dependants              *bool
}

// restartKey reads one restart key into s; it reports false for other keys.
func (l *loader) restartKey(k, v *yaml.Node, s *restartSpec, what string) bool {
	dur := func() *time.Duration {
		if d, ok := l.duration(v, what); ok {
			return &d
		}
		return nil
	}
	switch k.Value {
	case "restart":
		n := resolve(v)
		mode := n.Value
		if n.Kind == yaml.ScalarNode && n.Tag == "!!bool" {
			// YAML reads a bare `no` as false (and PyYAML too).
			if b, _ := l.boolean(n, what); b {
				mode = RestartAlways
			} else {
				mode = RestartNo
			}
		}
		switch mode {
		case RestartNo, RestartOnFailure, RestartAlways:
			s.mode = &mode
		default:
			l.errs.add(l.pos(n), "write no, on-failure or always", "%s: %q is not a restart policy", what, n.Value)
		}
	case "restart_delay":
		s.delay = dur()
	case "restart_delay_max":
		s.maxDelay = dur()
	case "restart_window":
		s.window = dur()
	case "max_restarts":
		n := resolve(v)
		var m int
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&m) != nil || m < 0 {
			l.errs.add(l.pos(n), "write a whole number (0: no limit)", "%s must be a non-negative integer", what)
			return true
		}
		s.max = &m
	case "restart_dependants":
		if b, ok := l.boolean(v, what); ok {
			s.dependants = &b
		}
	default:
		return false
	}
	return true
}

// policy applies s over def.
func (s restartSpec) policy(def Restart) Restart {
	r := def
	if s.mode != nil {
		r.Mode = *s.mode
	}
	if s.delay != nil {
		// The floor: a delay of 0 never doubles, so a process that crashes
		// at once would restart ~20 times a second (and fill its log).
		r.Delay = Duration(max(*s.delay, MinRestartDelay))
	}
	if s.maxDelay != nil {
		r.MaxDelay = Duration(max(*s.maxDelay, MinRestartDelay))
	}
	if s.window != nil {
		r.Window = Duration(*s.window)
	}
	if s.max != nil {
		r.Max = *s.max
	}
	if s.dependants != nil {
		r.Dependants = *s.dependants
	}
	return r
}

// defaultRestart is the policy of a config that says nothing.
func defaultRestart() Restart {
	return Restart{Mode: RestartNo, Delay: Duration(DefaultRestartDelay), MaxDelay: Duration(DefaultRestartDelayMax),
		Max: DefaultMaxRestarts, Window: Duration(DefaultRestartWindow)}
}

// checkRestart reports a policy that cannot work.
func (l *loader) checkRestart(p *Process) {
	r := p.Restart
	if !r.Enabled() {
		return
	}
	if !p.Persistent {
		l.errs.add(p.Pos, "remove restart, or make it persistent", "process %q: a one-shot (persistent: false) runs once; restart: %s applies to persistent processes", p.Name, r.Mode)
	}
	if r.MaxDelay < r.Delay {
		l.errs.add(p.Pos, "make restart_delay_max at least restart_delay", "process %q: restart_delay_max %s is less than restart_delay %s", p.Name, time.Duration(r.MaxDelay), time.Duration(r.Delay))
	}
	if r.Max > 0 && r.Window <= 0 {
		l.errs.add(p.Pos, "set restart_window, e.g. 60s", "process %q: max_restarts needs a restart_window", p.Name)
	}
}
