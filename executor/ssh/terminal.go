package ssh

import (
	"context"
	"errors"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"github.com/robotlauncher/launcher/executor"
)

// RunTerminal runs cmd on the remote machine attached to the local terminal
// through a remote PTY (used to attach to tmux windows: `launcher attach`,
// `mon` panes), over the same shared connection and with the same host-key
// and authentication rules as everything else.
func (h *Host) RunTerminal(ctx context.Context, cmd executor.Command, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	c, s, err := h.session(ctx)
	if err != nil {
		return -1, err
	}
	defer s.Close()
	width, height := 80, 24
	var restore func()
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		if w, hh, err := term.GetSize(int(f.Fd())); err == nil {
			width, height = w, hh
		}
		if st, err := term.MakeRaw(int(f.Fd())); err == nil {
			restore = func() { _ = term.Restore(int(f.Fd()), st) }
		}
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		go func() {
			for range winch {
				if w, hh, err := term.GetSize(int(f.Fd())); err == nil {
					_ = s.WindowChange(hh, w)
				}
			}
		}()
	}
	if restore != nil {
		defer restore()
	}
	termName := os.Getenv("TERM")
	if termName == "" {
		termName = "xterm-256color"
	}
	if err := s.RequestPty(termName, height, width, ssh.TerminalModes{ssh.ECHO: 1}); err != nil {
		return -1, h.unavailable("pty", err)
	}
	s.Stdin, s.Stdout, s.Stderr = stdin, stdout, stderr
	if err := s.Start(commandLine(cmd)); err != nil {
		h.dropClient(c)
		return -1, h.unavailable("exec", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = s.Close()
		return -1, ctx.Err()
	}
	var ee *ssh.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		return ee.ExitStatus(), nil
	}
	return -1, h.unavailable("exec", err)
}
