package api

import (
	"time"

	"github.com/robotlauncher/launcher/engine"
	"github.com/robotlauncher/launcher/engine/config"
)

// ProcessView is one row of `status --json` and of the API's process list:
// the stable JSON shape of a process's state, shared by every face that
// prints it, so the engine's types carry no output format.
type ProcessView struct {
	Process  string `json:"process"`
	Session  string `json:"session"`
	Machine  string `json:"machine"`
	State    string `json:"state"`
	PID      *int   `json:"pid"`
	ExitCode *int   `json:"exit_code"`
	// Error says why a row is CONFLICT, UNAVAILABLE, ORPHANED, RESTARTING
	// or a DEAD that gave up.
	Error string `json:"error,omitempty"`
	// Orphans are the pids of processes that outlived their window.
	Orphans []int `json:"orphans,omitempty"`
	// Restarts counts the restarts by the process's restart policy in its
	// current run; LastRestart and LastRestartExit describe the last one.
	Restarts        int        `json:"restarts"`
	LastRestart     *time.Time `json:"last_restart,omitempty"`
	LastRestartExit *int       `json:"last_restart_exit_code,omitempty"`
	// Started is when the window's current run started (its age), in the
	// clock of its machine, absent without a window.
	Started *time.Time `json:"started,omitempty"`
	// AgeMs is how long the current run has gone (ms), by its machine's
	// clock when the answer was made; a client adds the time since, and
	// its own clock being off the machine's changes nothing.
	AgeMs *int64 `json:"age_ms,omitempty"`
	// ConfigChanged: the run's command is not what the config renders now
	// for the variants and params it was started with; restarting it with
	// RunRequest (the restart route's body) applies the config.
	ConfigChanged bool        `json:"config_changed,omitempty"`
	RunRequest    *RunRequest `json:"run_request,omitempty"`
}

// RunRequest is what a run was started with.
type RunRequest struct {
	Variants []string          `json:"variants,omitempty"`
	Params   map[string]string `json:"params,omitempty"`
}

// StatusDoc is the whole `status --json` document.
type StatusDoc struct {
	Processes []ProcessView `json:"processes"`
}

// ViewOf turns status rows into their JSON shape.
func ViewOf(rows []engine.Status) StatusDoc {
	doc := StatusDoc{Processes: make([]ProcessView, 0, len(rows))}
	for _, r := range rows {
		doc.Processes = append(doc.Processes, viewOf(r))
	}
	return doc
}

func viewOf(r engine.Status) ProcessView {
	v := ProcessView{Process: r.Process, Session: r.Session, Machine: r.Machine,
		State: string(r.State), PID: r.PID, ExitCode: r.ExitCode, Error: r.Error, Orphans: r.Orphans,
		Restarts: r.Restarts, LastRestartExit: r.LastExit}
	if !r.LastRestart.IsZero() {
		t := r.LastRestart.UTC()
		v.LastRestart = &t
	}
	if !r.Started.IsZero() {
		t := r.Started.UTC()
		v.Started = &t
		age := r.Age.Milliseconds()
		v.AgeMs = &age
	}
	v.ConfigChanged = r.ConfigChanged
	if len(r.Request.Variants) > 0 || len(r.Request.Params) > 0 {
		v.RunRequest = &RunRequest{Variants: r.Request.Variants, Params: r.Request.Params}
	}
	return v
}

// VariantView is one entry of a process's `variants:` as a picker shows
// it: a flag (one choice named like it) or a group of exclusive choices.
type VariantView struct {
	Name    string   `json:"name"`
	Group   bool     `json:"group"`
	Choices []string `json:"choices"`
}

// ConfigView is what the config says of a process, for a GUI: where it
// runs, what it needs, its variants, and the GUI metadata concert_launcher
// configs carry (show_ui, category, _is_custom), kept as written.
type ConfigView struct {
	Name       string          `json:"name"`
	Machine    string          `json:"machine"`
	Session    string          `json:"session"`
	Docker     string          `json:"docker,omitempty"`
	Cmd        string          `json:"cmd"`
	Persistent bool            `json:"persistent"`
	Depends    []string        `json:"depends"`
	Variants   []VariantView   `json:"variants"`
	ReadyCheck string          `json:"ready_check,omitempty"`
	Restart    *config.Restart `json:"restart,omitempty"`
	ShowUI     *bool           `json:"show_ui,omitempty"`
	Category   string          `json:"category,omitempty"`
	IsCustom   bool            `json:"_is_custom,omitempty"`
	// Custom: added at run time through the API (serve --allow-exec); it
	// lives until removed or serve stops.
	Custom bool `json:"custom,omitempty"`
	// Extra holds the entry's other keys launcher does not use.
	Extra map[string]any `json:"extra,omitempty"`
}

func configView(p *config.Process) ConfigView {
	v := ConfigView{Name: p.Name, Machine: p.Machine, Session: p.Session, Docker: p.Docker, Cmd: p.Cmd,
		Persistent: p.Persistent, Depends: append([]string{}, p.Depends...), Variants: []VariantView{}, Custom: p.Custom}
	if p.ReadyCheck != nil {
		v.ReadyCheck = p.ReadyCheck.Cmd
		if p.ReadyCheck.Kind != "" {
			v.ReadyCheck = "check: " + p.ReadyCheck.Kind
		}
	}
	if p.Restart.Enabled() {
		r := p.Restart
		v.Restart = &r
	}
	for _, vr := range p.Variants {
		vv := VariantView{Name: vr.Name, Group: vr.Group, Choices: []string{}}
		for _, c := range vr.Choices {
			vv.Choices = append(vv.Choices, c.Name)
		}
		v.Variants = append(v.Variants, vv)
	}
	// The reference GUI lists a process unless show_ui is false: the
	// default is said, not left for each client to guess.
	show := true
	v.ShowUI = &show
	for k, x := range p.Extra {
		switch k {
		case "show_ui":
			if b, ok := x.(bool); ok {
				v.ShowUI = &b
				continue
			}
		case "category":
			if s, ok := x.(string); ok {
				v.Category = s
				continue
			}
		case "_is_custom":
			if b, ok := x.(bool); ok {
				v.IsCustom = b
				continue
			}
		}
		if v.Extra == nil {
			v.Extra = map[string]any{}
		}
		v.Extra[k] = x
	}
	return v
}
