package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/robotlauncher/launcher/cmd/launcher/api"
	"github.com/robotlauncher/launcher/engine"
	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/lua/binding"
)

// versionScript prints what a bug report needs to know of a machine, and
// its clock (its logs are stamped in it; see clockLine).
const versionScript = `tmux -V 2>&1; uname -srm; [ -r /etc/os-release ] && . /etc/os-release && echo "$PRETTY_NAME"; date '+clock %s %Y-%m-%dT%H:%M:%S%z'; exit 0`

// clockLine rewrites versionScript's "clock UNIX LOCAL" line, read by a
// command sent at sent and answered at got, into how far the machine's
// clock was from this computer's: the logs of a robot whose clock is
// minutes off the operator's laptop are stamped in the robot's clock, and
// a post-mortem that lines them up with the laptop's events needs the
// difference. Within 2 s counts as the same (the reading is whole seconds).
func clockLine(out []byte, sent, got time.Time) []byte {
	var b bytes.Buffer
	for _, line := range strings.SplitAfter(string(out), "\n") {
		f := strings.Fields(line)
		unix, err := int64(0), error(nil)
		if len(f) == 3 && f[0] == "clock" {
			_, err = fmt.Sscan(f[1], &unix)
		}
		if len(f) != 3 || f[0] != "clock" || err != nil {
			b.WriteString(line)
			continue
		}
		ahead := time.Unix(unix, 5e8).Sub(sent.Add(got.Sub(sent) / 2)).Round(time.Second)
		rel := "within 2 s of"
		switch {
		case ahead >= 2*time.Second:
			rel = ahead.String() + " ahead of"
		case ahead <= -2*time.Second:
			rel = (-ahead).String() + " behind"
		}
		fmt.Fprintf(&b, "clock: %s, %s the clock of the computer that took the bundle (%s)\n", f[2], rel, got.Format("2006-01-02T15:04:05-0700"))
	}
	return b.Bytes()
}

// bundleCommand is `launcher bundle`: everything about an incident in one
// file for a bug report or a post-mortem, taken while the robot runs.
func (s *session) bundleCommand() *cli.Command {
	return &cli.Command{
		Name:  "bundle",
		Usage: "everything about an incident in one .tar.gz: config, plan, status, process trees, events, logs, versions",
		Description: "Reads, never changes: the config and its plugins, the resolved plan, status --json, each process's\n" +
			"tree with CPU and RSS, the events launcher kept (<state dir>/SESSION/events.jsonl), every process's\n" +
			"log of the last --since from its machine, and the versions of launcher, tmux and each OS. A machine\n" +
			"that does not answer is noted in errors.txt; the rest is still bundled.",
		Flags: withCommon(
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write to `FILE` (default: launcher-bundle-SESSION-TIME.tar.gz here)"},
			&cli.DurationFlag{Name: "since", Value: time.Hour, Usage: "logs and events of the last `DURATION` (0: everything)"},
		),
		Action: s.bundle,
	}
}

// bundleWriter adds files to the archive, one at a time.
type bundleWriter struct {
	mu     sync.Mutex
	tw     *tar.Writer
	prefix string
	now    time.Time
	errs   []string
}

func (b *bundleWriter) add(name string, data []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.tw.WriteHeader(&tar.Header{Name: b.prefix + "/" + name, Mode: 0o600, Size: int64(len(data)), ModTime: b.now, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err := b.tw.Write(data)
	return err
}

func (b *bundleWriter) problem(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.errs = append(b.errs, fmt.Sprintf(format, args...))
}

func (s *session) bundle(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErr("bundle takes no arguments")
	}
	since := c.Duration("since")
	if since < 0 {
		return usageErr("--since %s: a duration such as 30m or 2h (0: everything)", since)
	}
	e, err := s.setup(c)
	if err != nil {
		return err
	}
	cfg := e.Config()
	now := time.Now()
	prefix := fmt.Sprintf("launcher-bundle-%s-%s", cfg.Session, now.Format("20060102-150405"))
	out := c.String("output")
	if out == "" {
		out = prefix + ".tar.gz"
	}
	// Written next to its final name, renamed at the end: a bundle that
	// exists is whole.
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".part-*")
	if err != nil {
		return &exitError{code: exitFailed, err: fmt.Errorf("bundle: %w", err)}
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	gz := gzip.NewWriter(tmp)
	b := &bundleWriter{tw: tar.NewWriter(gz), prefix: prefix, now: now}
	if err := s.bundleLocal(c.Context, b, e, cfg, since, now); err != nil {
		return err
	}
	s.bundleMachines(c.Context, b, e, cfg, since)
	if c.Context.Err() != nil {
		return c.Context.Err()
	}
	if len(b.errs) > 0 {
		if err := b.add("errors.txt", []byte(strings.Join(b.errs, "\n")+"\n")); err != nil {
			return err
		}
	}
	for _, cl := range []interface{ Close() error }{b.tw, gz} {
		if err := cl.Close(); err != nil {
			return &exitError{code: exitFailed, err: fmt.Errorf("bundle: %w", err)}
		}
	}
	if err := tmp.Close(); err != nil {
		return &exitError{code: exitFailed, err: fmt.Errorf("bundle: %w", err)}
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return &exitError{code: exitFailed, err: fmt.Errorf("bundle: %w", err)}
	}
	done = true
	fi, _ := os.Stat(out)
	var size int64
	if fi != nil {
		size = fi.Size()
	}
	fmt.Fprintf(s.stdout, "wrote %s (%d KB)", out, (size+1023)/1024)
	if len(b.errs) > 0 {
		fmt.Fprintf(s.stdout, "; incomplete: %d problem(s), listed in errors.txt", len(b.errs))
	}
	fmt.Fprintln(s.stdout)
	return nil
}

// bundleLocal adds what this machine knows: config, plugins, plan,
// status, process trees, the event journal and launcher's version.
func (s *session) bundleLocal(ctx context.Context, b *bundleWriter, e *engine.Engine, cfg *config.Config, since time.Duration, now time.Time) error {
	data, err := os.ReadFile(cfg.File)
	if err != nil {
		return err
	}
	if err := b.add("config/"+filepath.Base(cfg.File), data); err != nil {
		return err
	}
	for _, f := range binding.PluginFiles(cfg, s.getenv) {
		if data, err := os.ReadFile(f); err == nil {
			if err := b.add("config/plugins/"+filepath.Base(f), data); err != nil {
				return err
			}
		} else {
			b.problem("plugin %s: %v", f, err)
		}
	}
	if plan, err := cfg.Resolve(cfg.Names(), config.Request{}); err == nil {
		if err := b.add("plan.json", planJSON(cfg, plan, engine.PlanStart(cfg, plan))); err != nil {
			return err
		}
	} else {
		b.problem("plan: %v", err)
	}
	if rows, err := e.Status(ctx, nil); err == nil {
		j, _ := json.MarshalIndent(api.ViewOf(rows), "", "  ")
		if err := b.add("status.json", append(j, '\n')); err != nil {
			return err
		}
	} else {
		b.problem("status: %v", err)
	}
	if trees, err := e.Trees(ctx, nil); err == nil {
		if err := b.add("pstree.txt", []byte(formatTrees(trees, newStyle(false)))); err != nil {
			return err
		}
		j, _ := json.MarshalIndent(map[string]any{"trees": trees}, "", "  ")
		if err := b.add("pstree.json", append(j, '\n')); err != nil {
			return err
		}
	} else {
		b.problem("pstree: %v", err)
	}
	if s.journal != nil {
		if dir, err := s.journal.dir(); err == nil {
			ev := journalSince(journalPath(dir), since, now)
			if err := b.add("events.jsonl", ev); err != nil {
				return err
			}
		} else {
			b.problem("events: %v", err)
		}
	}
	v := fmt.Sprintf("launcher %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return b.add("versions/launcher.txt", []byte(v))
}

// journalSince returns the journal's events of the last since (0: all),
// the rotated file's first.
func journalSince(path string, since time.Duration, now time.Time) []byte {
	var out bytes.Buffer
	for _, f := range []string{path + ".1", path} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			var ev struct {
				Time time.Time `json:"time"`
			}
			if json.Unmarshal(sc.Bytes(), &ev) != nil || since > 0 && ev.Time.Before(now.Add(-since)) {
				continue
			}
			out.Write(sc.Bytes())
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}

// bundleMachines adds, from every machine at once, each process's log of
// the window and the machine's versions, with a progress line per
// machine.
func (s *session) bundleMachines(ctx context.Context, b *bundleWriter, e *engine.Engine, cfg *config.Config, since time.Duration) {
	byMachine := map[string][]*config.Process{}
	for _, p := range cfg.Processes {
		byMachine[p.Machine] = append(byMachine[p.Machine], p)
	}
	machines := make([]string, 0, len(byMachine))
	for m := range byMachine {
		machines = append(machines, m)
	}
	sort.Strings(machines)
	var wg sync.WaitGroup
	var outMu sync.Mutex
	for _, mach := range machines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dir := "machines/" + safeName(mach)
			var note []string
			sent := time.Now()
			res, err := e.ExecTarget(ctx, mach, versionScript, 10*time.Second)
			if err == nil {
				res.Stdout = clockLine(res.Stdout, sent, time.Now())
			}
			if err != nil {
				b.problem("%s: %v", mach, err)
				outMu.Lock()
				fmt.Fprintf(s.stderr, "bundle: %s: %v\n", mach, err)
				outMu.Unlock()
				return
			}
			if err := b.add(dir+"/versions.txt", res.Stdout); err != nil {
				b.problem("%s: %v", mach, err)
			}
			logs, lines := 0, 0
			for _, p := range byMachine[mach] {
				var buf bytes.Buffer
				n := 0
				err := e.Logs(ctx, p.Name, executor.LogQuery{Since: since}, func(l string) {
					buf.WriteString(l)
					buf.WriteByte('\n')
					n++
				})
				if err != nil {
					b.problem("%s: log of %s: %v", mach, p.Name, err)
					note = append(note, p.Name+": "+firstLine(err.Error()))
					continue
				}
				if err := b.add(fmt.Sprintf("%s/logs/%s/%s.log", dir, p.Session, p.Name), buf.Bytes()); err != nil {
					b.problem("%s: %v", mach, err)
					continue
				}
				logs++
				lines += n
			}
			msg := fmt.Sprintf("bundle: %s: versions, %d log(s), %d line(s)", mach, logs, lines)
			if len(note) > 0 {
				msg += "; failed: " + strings.Join(note, "; ")
			}
			outMu.Lock()
			fmt.Fprintln(s.stderr, msg)
			outMu.Unlock()
		}()
	}
	wg.Wait()
}

// safeName turns a machine string into a file name.
func safeName(m string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' || r == '@' {
			return r
		}
		return '_'
	}, m)
}
