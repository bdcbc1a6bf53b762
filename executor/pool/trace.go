package pool

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/robotlauncher/launcher/executor"
)

// traceHost logs every command a Host runs, with its duration: set
// LAUNCHER_TRACE=1 to see what launcher does on each machine.
type traceHost struct {
	executor.Host
	mu  *sync.Mutex
	out io.Writer
	t0  time.Time
}

func (h traceHost) log(start time.Time, args []string, code int, err error, stderr []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	desc := strings.Join(args, " ")
	if len(desc) > 160 {
		desc = desc[:160] + "…"
	}
	desc = strings.ReplaceAll(desc, "\n", "⏎")
	fmt.Fprintf(h.out, "trace %8.1fms %-6s %7.1fms exit=%d err=%v %s\n", float64(start.Sub(h.t0).Microseconds())/1000,
		h.Machine(), float64(time.Since(start).Microseconds())/1000, code, err, desc)
	if code != 0 && len(stderr) > 0 {
		fmt.Fprintf(h.out, "trace   stderr: %s\n", strings.TrimSpace(string(stderr)))
	}
}

func (h traceHost) Run(ctx context.Context, cmd executor.Command) (executor.Result, error) {
	start := time.Now()
	res, err := h.Host.Run(ctx, cmd)
	h.log(start, cmd.Args, res.ExitCode, err, res.Stderr)
	return res, err
}

// traceGroupHost is a traced host that runs process groups itself.
type traceGroupHost struct{ traceHost }

// RunGroup runs cmd with the host's RunGroup, traced.
func (h traceGroupHost) RunGroup(ctx context.Context, cmd executor.Command, timeout time.Duration) (executor.Result, error) {
	start := time.Now()
	res, err := h.Host.(executor.GroupRunner).RunGroup(ctx, cmd, timeout)
	h.log(start, append([]string{"(group)"}, cmd.Args...), res.ExitCode, err, res.Stderr)
	return res, err
}

func (h traceHost) Stream(ctx context.Context, cmd executor.Command) (executor.Stream, error) {
	h.log(time.Now(), append([]string{"(stream)"}, cmd.Args...), 0, nil, nil)
	return h.Host.Stream(ctx, cmd)
}

func (h traceHost) RunTerminal(ctx context.Context, cmd executor.Command, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	t, ok := h.Host.(executor.Terminal)
	if !ok {
		return -1, fmt.Errorf("machine %s cannot attach a terminal", h.Machine())
	}
	h.log(time.Now(), append([]string{"(terminal)"}, cmd.Args...), 0, nil, nil)
	return t.RunTerminal(ctx, cmd, stdin, stdout, stderr)
}

func (h traceHost) Close() error {
	if c, ok := h.Host.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
