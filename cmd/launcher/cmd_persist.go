package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/robotlauncher/launcher/executor/pool"
	"github.com/robotlauncher/launcher/executor/ssh"
)

// startsHelpers is false in the test binary, whose executable is not
// launcher and must not be started as a helper.
var startsHelpers = true

// defaultPersist is how long a machine's connection is kept after its last
// use when $LAUNCHER_SSH_PERSIST does not say.
const defaultPersist = 10 * time.Minute

// persistDuration is how long machines' connections are kept between
// commands ($LAUNCHER_SSH_PERSIST: a duration, or 0/no to keep none).
func (s *session) persistDuration() (time.Duration, error) {
	switch v := strings.ToLower(s.getenv("LAUNCHER_SSH_PERSIST")); v {
	case "":
		return defaultPersist, nil
	case "0", "no", "off", "false":
		return 0, nil
	default:
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return 0, usageErr("LAUNCHER_SSH_PERSIST=%q is not a duration (use 10m, or 0 to keep no connection)", v)
		}
		return d, nil
	}
}

// persistOptions sets how machines' connections are kept between commands.
func (s *session) persistOptions(o *ssh.Options) error {
	d, err := s.persistDuration()
	if err != nil || d == 0 {
		return err
	}
	dir := s.localStateDir()
	if dir == "" {
		return nil
	}
	dir = filepath.Join(dir, "ssh")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil // a read-only home: every command dials, as before
	}
	if err := pool.SafeDir(dir); err != nil {
		return nil // never a socket where another user could put one
	}
	o.Persist, o.PersistDir, o.StartPersist = d, dir, s.startHelper
	return nil
}

// localStateDir is this computer's state directory, by the rule the
// machines use (tmux.StateDirRule).
func (s *session) localStateDir() string {
	if d := s.getenv("LAUNCHER_STATE_DIR"); d != "" {
		if !filepath.IsAbs(d) {
			return ""
		}
		return d
	}
	if d := s.getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "launcher")
	}
	if h := s.getenv("HOME"); filepath.IsAbs(h) {
		return filepath.Join(h, ".local", "state", "launcher")
	}
	return ""
}

// startHelper starts `launcher ssh-persist MACHINE` in a session of its own,
// so that it outlives this command and no Ctrl-C of this terminal reaches it.
func (s *session) startHelper(machine string) {
	if !startsHelpers {
		return
	}
	self, err := os.Executable()
	if err != nil {
		return
	}
	cmd := exec.Command(self, "ssh-persist", "--", machine)
	cmd.Dir = "/"
	cmd.Env = s.reachEnv()
	for _, k := range []string{"PATH", "USER"} {
		if v := s.getenv(k); v != "" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if cmd.Start() == nil {
		go func() { _ = cmd.Wait() }()
	}
}

// persistCommand is the helper that keeps a machine's connection.
func (s *session) persistCommand() *cli.Command {
	return &cli.Command{
		Name:      "ssh-persist",
		Usage:     "keep MACHINE's SSH connection for the commands that follow (started by launcher; $LAUNCHER_SSH_PERSIST)",
		ArgsUsage: "MACHINE",
		Hidden:    true,
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageErr("ssh-persist needs one machine")
			}
			tr, err := s.sshTransport()
			if err != nil {
				return err
			}
			return tr.KeepConnection(c.Context, c.Args().First())
		},
	}
}
