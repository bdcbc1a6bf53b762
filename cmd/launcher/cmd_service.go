package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/robotlauncher/launcher/engine/config"
)

// unitMarker is the first line of every unit launcher writes: only such a
// file is ever replaced or removed.
const unitMarker = "# Written by `launcher service install`; `launcher service uninstall` removes it."

// serviceCommand is `launcher service`: a systemd unit that runs `launcher
// serve` at boot and brings processes up once the network is online, as
// ROS's robot_upstart does.
func (s *session) serviceCommand() *cli.Command {
	common := func(extra ...cli.Flag) []cli.Flag {
		return withCommon(append([]cli.Flag{
			&cli.BoolFlag{Name: "user", Usage: "a systemd user unit (~/.config/systemd/user) instead of a system one (/etc/systemd/system)"},
			&cli.StringFlag{Name: "name", Usage: "the unit's `NAME` (default launcher-SESSION)"},
		}, extra...)...)
	}
	return &cli.Command{
		Name:  "service",
		Usage: "run `launcher serve` at boot (a systemd unit) and bring processes up: install, uninstall, status",
		Subcommands: []*cli.Command{
			{
				Name:  "install",
				Usage: "write the unit (and enable and start it where systemd runs)",
				Flags: common(
					&cli.StringSliceFlag{Name: "up", Usage: "bring `PROC` up at boot, once the network is online (repeatable)"},
					&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8080", Usage: "serve's `ADDR`"},
					&cli.BoolFlag{Name: "no-enable", Usage: "only write the unit; do not run systemctl"},
				),
				Action: s.serviceInstall,
			},
			{Name: "uninstall", Usage: "stop, disable and remove the unit", Flags: common(), Action: s.serviceUninstall},
			{Name: "status", Usage: "where the unit is, what it runs, and whether it is active", Flags: common(), Action: s.serviceStatus},
		},
	}
}

// unitPath is where the unit of this config goes.
func (s *session) unitPath(c *cli.Context) (name, path string, err error) {
	if _, err := s.load(c); err != nil {
		return "", "", err
	}
	name = c.String("name")
	if name == "" {
		name = "launcher-" + s.cfg.Session
	}
	if !config.ValidProcessName(name) {
		return "", "", usageErr("--name %q: use letters, digits, _, . and -", name)
	}
	dir := "/etc/systemd/system"
	if c.Bool("user") {
		base := s.getenv("XDG_CONFIG_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", "", err
			}
			base = filepath.Join(home, ".config")
		}
		dir = filepath.Join(base, "systemd", "user")
	}
	return name, filepath.Join(dir, name+".service"), nil
}

// systemdQuote quotes one word of an ExecStart= or Environment= line:
// double quotes, with backslash escapes, % and $ doubled (specifiers and
// variables are never expanded in what we write).
func systemdQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "%", "%%", "$", "$$", "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// unitText renders the unit. KillMode=process: stopping or restarting the
// service ends serve only, never the tmux server and the robot's
// processes it started (they are meant to outlive any launcher).
func unitText(desc string, user bool, runAs string, env []string, argv []string) string {
	var b strings.Builder
	fmt.Fprintln(&b, unitMarker)
	fmt.Fprintln(&b, "[Unit]")
	fmt.Fprintf(&b, "Description=%s\n", strings.ReplaceAll(desc, "%", "%%"))
	fmt.Fprintln(&b, "Wants=network-online.target")
	fmt.Fprintln(&b, "After=network-online.target")
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "[Service]")
	fmt.Fprintln(&b, "Type=simple")
	if runAs != "" {
		fmt.Fprintf(&b, "User=%s\n", runAs)
	}
	for _, kv := range env {
		fmt.Fprintf(&b, "Environment=%s\n", systemdQuote(kv))
	}
	words := make([]string, len(argv))
	for i, a := range argv {
		words[i] = systemdQuote(a)
	}
	fmt.Fprintf(&b, "ExecStart=%s\n", strings.Join(words, " "))
	fmt.Fprintln(&b, "Restart=on-failure")
	fmt.Fprintln(&b, "RestartSec=5s")
	fmt.Fprintln(&b, "KillMode=process")
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "[Install]")
	if user {
		fmt.Fprintln(&b, "WantedBy=default.target")
	} else {
		fmt.Fprintln(&b, "WantedBy=multi-user.target")
	}
	return b.String()
}

// ours reports whether the file at path is a unit launcher wrote (or
// missing: ok to write).
func ours(path string) (exists, mine bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, true, nil
	}
	if err != nil {
		return false, false, err
	}
	return true, bytes.HasPrefix(data, []byte(unitMarker)), nil
}

// systemdRuns tells whether this machine booted with systemd (in a
// container it usually did not: the unit is written, systemctl is not run).
func systemdRuns() bool {
	fi, err := os.Stat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

func (s *session) systemctl(user bool, args ...string) error {
	if user {
		args = append([]string{"--user"}, args...)
	}
	cmd := exec.Command("systemctl", args...)
	cmd.Stdout, cmd.Stderr = s.stdout, s.stderr
	if err := cmd.Run(); err != nil {
		return &exitError{code: exitFailed, err: fmt.Errorf("systemctl %s: %w", strings.Join(args, " "), err)}
	}
	return nil
}

func (s *session) serviceInstall(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErr("service install takes no arguments (processes go with --up)")
	}
	name, path, err := s.unitPath(c)
	if err != nil {
		return err
	}
	up := c.StringSlice("up")
	if err := s.checkNames(up); err != nil {
		return err
	}
	userUnit := c.Bool("user")
	if !userUnit && os.Geteuid() != 0 {
		return &exitError{code: exitFailed, err: fmt.Errorf("a system unit goes to /etc/systemd/system: run with sudo, or use --user")}
	}
	exists, mine, err := ours(path)
	if err != nil {
		return err
	}
	if !mine {
		return &exitError{code: exitFailed, err: fmt.Errorf("%s exists and launcher did not write it: nothing changed (remove it, or choose another --name)", path)}
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	cfg, err := filepath.Abs(s.cfg.File)
	if err != nil {
		return err
	}
	argv := []string{bin, "serve", "-c", cfg, "--listen", c.String("listen")}
	for _, p := range up {
		argv = append(argv, "--up", p)
	}
	// The service acts as this shell does: its launcher settings (state
	// directory, tmux socket, SSH key and known hosts…) go with it.
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "LAUNCHER_") && k != "LAUNCHER_CONFIG" || k == "TMUX_TMPDIR" {
			env = append(env, kv)
		}
	}
	sort.Strings(env)
	runAs := ""
	if !userUnit {
		if su := os.Getenv("SUDO_USER"); su != "" && su != "root" {
			runAs = su
		} else if u, err := user.Current(); err == nil && u.Username != "root" {
			runAs = u.Username
		}
	}
	text := unitText(fmt.Sprintf("launcher: %s (%s)", s.cfg.Session, cfg), userUnit, runAs, env, argv)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	verb := "wrote"
	if exists {
		verb = "updated"
	}
	fmt.Fprintf(s.stdout, "%s %s: `launcher serve` at boot", verb, path)
	if len(up) > 0 {
		fmt.Fprintf(s.stdout, ", then %s up once the network is online", strings.Join(up, ", "))
	}
	fmt.Fprintln(s.stdout)
	scope := ""
	if userUnit {
		scope = "--user "
	}
	switch {
	case c.Bool("no-enable"):
		fmt.Fprintf(s.stdout, "enable it with: systemctl %sdaemon-reload && systemctl %senable --now %s\n", scope, scope, name)
	case !systemdRuns():
		fmt.Fprintf(s.stdout, "systemd does not run here: once it does, systemctl %sdaemon-reload && systemctl %senable --now %s\n", scope, scope, name)
	default:
		if err := s.systemctl(userUnit, "daemon-reload"); err != nil {
			return err
		}
		if err := s.systemctl(userUnit, "enable", "--now", name); err != nil {
			return err
		}
		fmt.Fprintf(s.stdout, "enabled and started %s\n", name)
		if userUnit {
			fmt.Fprintf(s.stdout, "for it to start at boot without a login: loginctl enable-linger %s\n", os.Getenv("USER"))
		}
	}
	return nil
}

func (s *session) serviceUninstall(c *cli.Context) error {
	name, path, err := s.unitPath(c)
	if err != nil {
		return err
	}
	exists, mine, err := ours(path)
	if err != nil {
		return err
	}
	if !exists {
		fmt.Fprintf(s.stdout, "%s is not installed (%s)\n", name, path)
		return nil
	}
	if !mine {
		return &exitError{code: exitFailed, err: fmt.Errorf("%s was not written by launcher: left as it is", path)}
	}
	if systemdRuns() {
		// Stops serve only (KillMode=process): the robot keeps running.
		_ = s.systemctl(c.Bool("user"), "disable", "--now", name)
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	if systemdRuns() {
		_ = s.systemctl(c.Bool("user"), "daemon-reload")
	}
	fmt.Fprintf(s.stdout, "removed %s (processes it started keep running)\n", path)
	return nil
}

func (s *session) serviceStatus(c *cli.Context) error {
	name, path, err := s.unitPath(c)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(s.stdout, "%s: not installed (launcher service install)\n", name)
		return &exitError{code: 3}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(s.stdout, "%s: %s\n", name, path)
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "ExecStart=") {
			fmt.Fprintln(s.stdout, "  "+l)
		}
	}
	if !systemdRuns() {
		fmt.Fprintln(s.stdout, "  systemd does not run here")
		return nil
	}
	args := []string{"is-active", name}
	if c.Bool("user") {
		args = append([]string{"--user"}, args...)
	}
	out, _ := exec.Command("systemctl", args...).Output()
	fmt.Fprintf(s.stdout, "  active: %s\n", strings.TrimSpace(string(out)))
	return nil
}
