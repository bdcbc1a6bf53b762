// Package local runs commands on the computer the launcher runs on: the
// executor.Host for machine "local".
package local

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/robotlauncher/launcher/executor"
)

// Host runs commands locally with os/exec. Each command gets its own process
// group so that cancelling it stops everything it started.
type Host struct{}

var _ executor.Host = Host{}

// Machine returns "local".
func (Host) Machine() string { return executor.Local }

// Run runs cmd and captures its output. A cancelled ctx kills the command's
// process group and returns ctx.Err().
func (Host) Run(ctx context.Context, cmd executor.Command) (executor.Result, error) {
	if len(cmd.Args) == 0 {
		return executor.Result{}, errors.New("local: empty command")
	}
	c := command(cmd)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if cmd.Stdin != nil {
		c.Stdin = bytes.NewReader(cmd.Stdin)
	}
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A background child that keeps our pipes open must not hang Run.
	c.WaitDelay = time.Second
	if err := c.Start(); err != nil {
		return executor.Result{ExitCode: 127, Stderr: []byte(err.Error())}, nil
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		return result(c, err, &out, &errb)
	case <-ctx.Done():
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		<-done
		return executor.Result{ExitCode: -1, Stdout: out.Bytes(), Stderr: errb.Bytes()}, ctx.Err()
	}
}

var _ executor.GroupRunner = Host{}

// RunGroup runs cmd in a process group of its own, bounded by timeout (0:
// none), and kills what is left of the group once cmd's process ends: a
// ready check's `sleep 5 &` is gone with it, and does not hold the
// output open. Out of time, the group is killed and the result is exit
// code 124 ("timed out").
func (Host) RunGroup(ctx context.Context, cmd executor.Command, timeout time.Duration) (executor.Result, error) {
	if len(cmd.Args) == 0 {
		return executor.Result{}, errors.New("local: empty command")
	}
	c := command(cmd)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if cmd.Stdin != nil {
		c.Stdin = bytes.NewReader(cmd.Stdin)
	}
	// Pipes of our own (not exec's copying goroutines, which Wait waits
	// for): the group is killed between the process's end and the end of
	// its output.
	var out, errb bytes.Buffer
	outR, outW, err := os.Pipe()
	if err != nil {
		return executor.Result{}, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return executor.Result{}, err
	}
	c.Stdout, c.Stderr = outW, errW
	readers := make(chan struct{}, 2)
	for _, p := range []struct {
		r   *os.File
		buf *bytes.Buffer
	}{{outR, &out}, {errR, &errb}} {
		go func() {
			_, _ = io.Copy(p.buf, p.r)
			readers <- struct{}{}
		}()
	}
	// Closing the read ends ends the readers (a child that left the group
	// may hold the write ends for ever).
	endReaders := func() {
		outR.Close()
		errR.Close()
		<-readers
		<-readers
	}
	startErr := c.Start()
	// Our copies of the write ends: the readers end when the group's do.
	outW.Close()
	errW.Close()
	if startErr != nil {
		endReaders()
		return executor.Result{ExitCode: 127, Stderr: []byte(startErr.Error())}, nil
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	kill := func() { _ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	timedOut := false
	select {
	case err = <-done:
	case <-expired:
		kill()
		err, timedOut = <-done, true
	case <-ctx.Done():
		kill()
		<-done
		endReaders()
		return executor.Result{ExitCode: -1, Stdout: out.Bytes(), Stderr: errb.Bytes()}, ctx.Err()
	}
	kill()
	// The output ends with the group, or (a child that left it holds it)
	// a second later at most.
	wait := time.AfterFunc(time.Second, func() {
		outR.Close()
		errR.Close()
	})
	<-readers
	<-readers
	wait.Stop()
	outR.Close()
	errR.Close()
	if timedOut {
		return executor.Result{ExitCode: 124, Stdout: out.Bytes(), Stderr: []byte("timed out")}, nil
	}
	return result(c, err, &out, &errb)
}

func command(cmd executor.Command) *exec.Cmd {
	c := exec.Command(cmd.Args[0], cmd.Args[1:]...)
	c.Dir = cmd.Dir
	if len(cmd.Env) > 0 {
		c.Env = os.Environ()
		for _, e := range cmd.Env {
			c.Env = append(c.Env, e.Name+"="+e.Value)
		}
	}
	return c
}

func result(c *exec.Cmd, err error, out, errb *bytes.Buffer) (executor.Result, error) {
	r := executor.Result{Stdout: out.Bytes(), Stderr: errb.Bytes()}
	if err == nil {
		return r, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.ExitCode = exitCode(ee.ProcessState)
		return r, nil
	}
	return r, err
}

func exitCode(ps interface{ Sys() any }) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
		if ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
	return -1
}

// Stream starts cmd with its stdout readable as it is produced.
func (Host) Stream(ctx context.Context, cmd executor.Command) (executor.Stream, error) {
	if len(cmd.Args) == 0 {
		return nil, errors.New("local: empty command")
	}
	c := command(cmd)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if cmd.Stdin != nil {
		c.Stdin = bytes.NewReader(cmd.Stdin)
	}
	pr, err := c.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.Start(); err != nil {
		return nil, err
	}
	s := &stream{cmd: c, r: pr, done: make(chan struct{})}
	go func() {
		select {
		case <-ctx.Done():
			s.kill()
		case <-s.done:
		}
	}()
	return s, nil
}

type stream struct {
	cmd      *exec.Cmd
	r        io.Reader
	done     chan struct{}
	waitOnce sync.Once
	waitErr  error
	killOnce sync.Once
}

func (s *stream) Read(p []byte) (int, error) { return s.r.Read(p) }

func (s *stream) kill() {
	s.killOnce.Do(func() { _ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL) })
}

func (s *stream) Wait() error {
	s.waitOnce.Do(func() {
		s.waitErr = s.cmd.Wait()
		close(s.done)
	})
	return s.waitErr
}

func (s *stream) Close() error {
	s.kill()
	errc := make(chan error, 1)
	go func() { errc <- s.Wait() }()
	select {
	case <-errc:
	case <-time.After(5 * time.Second):
	}
	return nil
}

// RunTerminal runs cmd on the caller's terminal (stdin, stdout and stderr
// are passed through) and returns its exit code.
func (Host) RunTerminal(ctx context.Context, cmd executor.Command, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if len(cmd.Args) == 0 {
		return -1, errors.New("local: empty command")
	}
	c := command(cmd)
	c.Stdin, c.Stdout, c.Stderr = stdin, stdout, stderr
	err := c.Run()
	if err == nil {
		return 0, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return exitCode(ee.ProcessState), nil
	}
	return -1, err
}
