package main

import (
	"time"

	"github.com/robotlauncher/launcher/engine"
)

// processView is one row of `status --json`: the stable JSON shape of a
// process's state, shared by every face that prints it (the CLI now, the
// HTTP API next), so the engine's types carry no output format.
type processView struct {
	Process  string `json:"process"`
	Session  string `json:"session"`
	Machine  string `json:"machine"`
	State    string `json:"state"`
	PID      *int   `json:"pid"`
	ExitCode *int   `json:"exit_code"`
	// Error says why a row is CONFLICT, UNAVAILABLE or ORPHANED.
	Error string `json:"error,omitempty"`
	// Orphans are the pids of processes that outlived their window.
	Orphans []int `json:"orphans,omitempty"`
	// Restarts counts the restarts by the process's restart policy in its
	// current run; LastRestart and LastRestartExit describe the last one.
	Restarts        int        `json:"restarts"`
	LastRestart     *time.Time `json:"last_restart,omitempty"`
	LastRestartExit *int       `json:"last_restart_exit_code,omitempty"`
}

// statusDoc is the whole `status --json` document.
type statusDoc struct {
	Processes []processView `json:"processes"`
}

func viewOf(rows []engine.Status) statusDoc {
	doc := statusDoc{Processes: make([]processView, 0, len(rows))}
	for _, r := range rows {
		v := processView{Process: r.Process, Session: r.Session, Machine: r.Machine,
			State: string(r.State), PID: r.PID, ExitCode: r.ExitCode, Error: r.Error, Orphans: r.Orphans,
			Restarts: r.Restarts, LastRestartExit: r.LastExit}
		if !r.LastRestart.IsZero() {
			t := r.LastRestart.UTC()
			v.LastRestart = &t
		}
		doc.Processes = append(doc.Processes, v)
	}
	return doc
}
