package ssh

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/executor/shell"
	"golang.org/x/crypto/ssh"
)

// A resident shell is one `sh` kept running on the machine over one SSH
// session; commands are written to its standard input and their output read
// back up to a random end mark. A command then costs one round trip instead
// of three (open a channel, exec, exit), which on a robot's 50 ms link is
// most of an operation's time. Each command runs in a subshell with its
// standard input from /dev/null (or its own data), so the resident's stdin
// stays the request stream and no state leaks between commands.
type resident struct {
	c        *ssh.Client
	s        *ssh.Session
	in       io.WriteCloser
	out, err *bufio.Reader
	ended    chan struct{} // closed when the shell has exited
}

// alive tells whether the shell still runs (one that died while idle, say
// killed on the machine, is not handed a command that would be lost).
func (r *resident) alive() bool {
	select {
	case <-r.ended:
		return false
	default:
		return true
	}
}

// errResidentBroken means the resident shell ended or its output made no
// sense; the command may or may not have run.
var errResidentBroken = errors.New("resident shell ended")

// errNoResident means the machine refused to run sh on a session (a
// ForceCommand, a restricted shell): commands get sessions of their own.
var errNoResident = errors.New("no resident shell")

// startResident opens a session on c and starts sh in it.
func startResident(c *ssh.Client) (*resident, error) {
	s, err := c.NewSession()
	if err != nil {
		return nil, err
	}
	in, err := s.StdinPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	out, err := s.StdoutPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	errp, err := s.StderrPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	if err := s.Start("sh"); err != nil {
		s.Close()
		return nil, fmt.Errorf("%w: %w", errNoResident, err)
	}
	r := &resident{c: c, s: s, in: in, out: bufio.NewReaderSize(out, 64<<10), err: bufio.NewReaderSize(errp, 4<<10),
		ended: make(chan struct{})}
	go func() {
		_ = s.Wait()
		close(r.ended)
	}()
	return r, nil
}

func (r *resident) close() {
	_ = r.in.Close()
	_ = r.s.Close()
}

// request is the text that runs cmd in the resident shell and then prints
// the end marks: "\nTOKEN STATUS\n" on stdout, "\nTOKEN\n" on stderr (the
// leading newline puts each mark at the start of a line whatever the
// command printed last).
func request(cmd executor.Command, token string) string {
	// The command runs as an asynchronous list awaited by `wait` with the
	// shell's stderr closed: a shell says "Terminated" for a foreground
	// command killed by a signal, which would be taken for the command's
	// own error output.
	var b bytes.Buffer
	if cmd.Stdin != nil {
		b.WriteString("printf %s " + shell.Quote(string(cmd.Stdin)) + " | (\n")
		b.WriteString(script(cmd))
		b.WriteString(") &")
	} else {
		b.WriteString("(\n")
		b.WriteString(script(cmd))
		b.WriteString(") </dev/null &")
	}
	b.WriteString(" wait $! 2>/dev/null")
	fmt.Fprintf(&b, "; printf '\\n%s %%d\\n' \"$?\"; printf '\\n%s\\n' >&2\n", token, token)
	return b.String()
}

// readUntil reads lines from rd until the end mark line (prefix token) and
// returns what came before it, without the newline the mark added, and the
// rest of the mark line.
func readUntil(rd *bufio.Reader, token string) ([]byte, string, error) {
	var acc []byte
	for {
		line, err := rd.ReadBytes('\n')
		if err != nil {
			return acc, "", fmt.Errorf("%w: %w", errResidentBroken, err)
		}
		if bytes.HasPrefix(line, []byte(token)) {
			if len(acc) == 0 || acc[len(acc)-1] != '\n' {
				return acc, "", fmt.Errorf("%w: end mark out of place", errResidentBroken)
			}
			return acc[:len(acc)-1], string(bytes.TrimSpace(line[len(token):])), nil
		}
		acc = append(acc, line...)
	}
}

// run runs cmd; an error means the resident is no longer usable.
func (r *resident) run(ctx context.Context, cmd executor.Command) (executor.Result, error) {
	tb := make([]byte, 12)
	_, _ = rand.Read(tb)
	token := "LRES" + hex.EncodeToString(tb)
	type half struct {
		b   []byte
		err error
	}
	errc := make(chan half, 1)
	go func() {
		b, _, err := readUntil(r.err, token)
		errc <- half{b, err}
	}()
	type full struct {
		b    []byte
		code string
		err  error
	}
	outc := make(chan full, 1)
	go func() {
		b, code, err := readUntil(r.out, token)
		outc <- full{b, code, err}
	}()
	if _, err := io.WriteString(r.in, request(cmd, token)); err != nil {
		r.close()
		return executor.Result{}, fmt.Errorf("%w: %w", errResidentBroken, err)
	}
	var o full
	select {
	case o = <-outc:
	case <-ctx.Done():
		// The command is still running: this shell cannot be reused. Its
		// readers end when the session does (sshd closes it once the
		// command exits); the caller does not wait for that.
		r.close()
		return executor.Result{ExitCode: -1}, ctx.Err()
	}
	var e half
	select {
	case e = <-errc:
	case <-ctx.Done():
		r.close()
		return executor.Result{ExitCode: -1}, ctx.Err()
	}
	if o.err != nil || e.err != nil {
		r.close()
		return executor.Result{}, errors.Join(o.err, e.err)
	}
	code, err := strconv.Atoi(o.code)
	if err != nil {
		r.close()
		return executor.Result{}, fmt.Errorf("%w: bad status %q", errResidentBroken, o.code)
	}
	return executor.Result{Stdout: o.b, Stderr: e.b, ExitCode: code}, nil
}
