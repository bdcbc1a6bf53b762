package engine

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/executor"
)

// planConfig is the robot of the trial: planner (local) needs
// perception and camera_driver (armpc); a one-shot calibration step sits
// between the driver and the arm controller; logger needs nothing.
const planConfig = `
context: {session: robot}
camera_driver: {cmd: cam, machine: armpc}
perception: {cmd: perc, machine: armpc, depends: [camera_driver]}
planner: {cmd: plan, depends: [perception, camera_driver]}
calib: {cmd: calib, persistent: false, depends: [camera_driver]}
arm: {cmd: arm, depends: [calib]}
logger: {cmd: log}
`

func TestPlans(t *testing.T) {
	cfg, err := config.Parse("plan.yaml", []byte(planConfig))
	if err != nil {
		t.Fatal(err)
	}
	up := func(names ...string) map[string]State {
		m := map[string]State{}
		for _, n := range names {
			m[n] = StateReady
		}
		return m
	}
	rows := []struct {
		name   string
		plan   func() OpPlan
		stop   []string
		start  []string
		machns []string
	}{
		{"run starts the dependencies first, in config order",
			func() OpPlan { return PlanStart(cfg, resolve(t, cfg, "planner")) },
			nil, []string{"camera_driver", "perception", "planner"}, []string{"armpc", "local"}},
		{"kill stops the persistent dependants, through a one-shot step",
			func() OpPlan { return PlanKill(cfg, []string{"camera_driver"}, false) },
			[]string{"camera_driver", "perception", "planner", "arm"}, nil, []string{"armpc", "local"}},
		{"kill of a one-shot (a group) stops what it depends on",
			func() OpPlan { return PlanKill(cfg, []string{"calib"}, false) },
			[]string{"camera_driver", "perception", "planner", "calib", "arm"}, nil, []string{"armpc", "local"}},
		{"kill of a leaf stops only it",
			func() OpPlan { return PlanKill(cfg, []string{"logger"}, false) },
			[]string{"logger"}, nil, []string{"local"}},
		{"kill --all stops everything",
			func() OpPlan { return PlanKill(cfg, nil, true) },
			cfg.Names(), nil, []string{"armpc", "local"}},
		// Issue 12, finding 1: the restart's plan names armpc, whose check
		// then refuses it before the local planner is stopped.
		{"restart brings back the dependants that ran",
			func() OpPlan {
				return PlanRestart(cfg, "camera_driver", resolve(t, cfg, "camera_driver"), up("perception", "planner"))
			},
			[]string{"camera_driver", "perception", "planner", "arm"}, []string{"camera_driver", "perception", "planner"}, []string{"armpc", "local"}},
		{"restart leaves stopped dependants stopped",
			func() OpPlan {
				return PlanRestart(cfg, "camera_driver", resolve(t, cfg, "camera_driver"), map[string]State{"perception": StateStopped, "planner": StateDead})
			},
			[]string{"camera_driver", "perception", "planner", "arm"}, []string{"camera_driver"}, []string{"armpc", "local"}},
		{"restart counts a dependant on a machine that does not answer as running (the check then refuses)",
			func() OpPlan {
				return PlanRestart(cfg, "camera_driver", resolve(t, cfg, "camera_driver"), map[string]State{"perception": StateUnavailable})
			},
			[]string{"camera_driver", "perception", "planner", "arm"}, []string{"camera_driver", "perception"}, []string{"armpc", "local"}},
		{"restart of a dependant behind a one-shot starts the one-shot's chain again",
			func() OpPlan {
				return PlanRestart(cfg, "camera_driver", resolve(t, cfg, "camera_driver"), up("arm"))
			},
			[]string{"camera_driver", "perception", "planner", "arm"}, []string{"camera_driver", "calib", "arm"}, []string{"armpc", "local"}},
		{"a restarting dependant (its policy's delay) comes back too",
			func() OpPlan {
				return PlanRestart(cfg, "perception", resolve(t, cfg, "perception"), map[string]State{"planner": StateRestarting})
			},
			[]string{"perception", "planner"}, []string{"camera_driver", "perception", "planner"}, []string{"armpc", "local"}},
	}
	for _, r := range rows {
		p := r.plan()
		if !reflect.DeepEqual(p.Stop, r.stop) || !reflect.DeepEqual(p.Start, r.start) || !reflect.DeepEqual(p.Machines(cfg), r.machns) {
			t.Errorf("%s:\n got stop %v start %v machines %v\nwant stop %v start %v machines %v",
				r.name, p.Stop, p.Start, p.Machines(cfg), r.stop, r.start, r.machns)
		}
	}
}

func resolve(t *testing.T, cfg *config.Config, names ...string) *config.Plan {
	t.Helper()
	p, err := cfg.Resolve(names, config.Request{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlanErrorNamesEveryProblem(t *testing.T) {
	err := &PlanError{Op: "restart", Target: "camera_driver", Problems: []error{errors.New("armpc: unreachable"), errors.New("a log is full")}}
	msg := err.Error()
	if !strings.HasPrefix(msg, "restart camera_driver: nothing was changed:") || !strings.Contains(msg, "\n  - armpc: unreachable") || !strings.Contains(msg, "\n  - a log is full") {
		t.Errorf("message: %q", msg)
	}
	if !IsPlanRefusal(err) {
		t.Error("not a refusal")
	}
}

func TestWaitDeadlineBoundsWaitsOnly(t *testing.T) {
	ctx := WithWaitDeadline(context.Background(), time.Now().Add(-time.Second))
	if ctx.Err() != nil {
		t.Fatal("a wait deadline must not cancel the operation's acts")
	}
	if dl, ok := waitDeadline(ctx); !ok || time.Until(dl) >= 0 {
		t.Errorf("deadline %v %v", dl, ok)
	}
}

// The check of a restart's plan refuses it, with nothing stopped, when a
// machine of a dependant does not answer (issue 12, finding 1, on the
// fake executor).
func TestRestartCheckedBeforeItActs(t *testing.T) {
	e, conn, _ := newTestEngine(t, planConfig)
	ctx := ctxT(t)
	if err := e.Start(ctx, []string{"planner", "logger"}, config.Request{}); err != nil {
		t.Fatal(err)
	}
	loc := local(t, conn)
	conn.Down["armpc"] = true
	err := e.Restart(ctx, "logger", config.Request{}, KillOptions{})
	if err != nil {
		t.Fatalf("a restart that needs only the local machine: %v", err)
	}
	before := loc.Calls()
	err = e.Restart(ctx, "camera_driver", config.Request{}, KillOptions{})
	var pe *PlanError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "armpc") {
		t.Fatalf("restart with armpc down: %v", err)
	}
	for _, c := range loc.Calls()[len(before):] {
		if strings.HasPrefix(c, "signal") || strings.HasPrefix(c, "spawn") {
			t.Errorf("the refused restart acted on the local machine: %s", c)
		}
	}
	if err := e.Kill(ctx, []string{"perception"}, false, KillOptions{}); !errors.As(err, &pe) {
		t.Errorf("kill with armpc down: %v", err)
	}
	sts, err := e.WindowStates(ctx, []string{"planner"})
	if err != nil || sts[0].State != StateReady {
		t.Errorf("planner after the refusals: %+v %v", sts, err)
	}
}

// With machines down, kill --skip-unreachable stops what needs none of them
// and fails naming the rest.
func TestKillSkipUnreachable(t *testing.T) {
	e, conn, _ := newTestEngine(t, planConfig)
	ctx := ctxT(t)
	if err := e.Start(ctx, []string{"planner", "logger"}, config.Request{}); err != nil {
		t.Fatal(err)
	}
	conn.Down["armpc"] = true
	err := e.Kill(ctx, nil, true, KillOptions{SkipUnreachable: true})
	if !executor.IsUnavailable(err) || !strings.Contains(err.Error(), "camera_driver, perception, calib") {
		t.Fatalf("kill --all --skip-unreachable: %v", err)
	}
	sts, err := e.WindowStates(ctx, []string{"planner", "logger"})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		if st.State != StateStopped {
			t.Errorf("%s is %s, want STOPPED", st.Process, st.State)
		}
	}
	conn.Down["armpc"] = false
	sts, _ = e.WindowStates(ctx, []string{"camera_driver", "perception"})
	for _, st := range sts {
		if st.State != StateReady {
			t.Errorf("%s on the machine that was down is %s, want READY", st.Process, st.State)
		}
	}
}

// Issue 15, bug 4: a start whose timeout runs out while a dependency that
// already ran is checked again blames the operation's timeout on the
// process asked for, not a failure on the dependency (which was READY and
// untouched).
func TestTimeoutBlamesTheOperationNotARunningDependency(t *testing.T) {
	e, conn, events := newTestEngine(t, `
context: {session: s}
core: {cmd: core, ready_check: "check-core"}
ctrl: {cmd: ctrl, depends: [core]}
`)
	ctx := ctxT(t)
	if err := e.Start(ctx, []string{"core"}, config.Request{}); err != nil {
		t.Fatal(err)
	}
	m := local(t, conn)
	m.Check = func(spec executor.ExecSpec) executor.Result {
		return executor.Result{ExitCode: 1} // the re-check does not pass in time
	}
	err := e.Start(WithWaitDeadline(ctx, time.Now().Add(50*time.Millisecond)), []string{"ctrl"}, config.Request{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("start: %v", err)
	}
	var failed []string
	for _, ev := range events() {
		if ev.Kind == Failed {
			failed = append(failed, ev.Process+": "+ev.Message)
		}
	}
	if len(failed) != 1 || !strings.HasPrefix(failed[0], "ctrl: not started: the operation's timeout ran out while waiting for core") {
		t.Errorf("failed events: %q", failed)
	}
}
