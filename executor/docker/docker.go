// Package docker builds the `docker exec` command lines that run a process
// or a check inside a running container, and checks that the container is
// there before anything changes on the machine.
package docker

import (
	"context"
	"fmt"
	"strings"

	"github.com/robotlauncher/launcher/executor"
)

// ExecOptions describe one `docker exec`.
type ExecOptions struct {
	// TTY gives the command a terminal (-it): used for processes in panes,
	// where C-c must reach the container's foreground job. Checks run with -i.
	TTY    bool
	Env    []executor.EnvVar
	Cwd    string
	Script string
}

// ExecArgv returns `docker exec -i[t] [-e NAME]… [-w DIR] CONTAINER bash -ic SCRIPT`.
// The script is one argv element, so it reaches the container's bash byte for
// byte whatever quotes or metacharacters it holds. Only the names of Env are
// on the command line: docker takes the values from its own environment, so
// the caller runs it with Env set (a secret never shows in `ps`).
func ExecArgv(container string, o ExecOptions) []string {
	argv := []string{"docker", "exec", "-i"}
	if o.TTY {
		argv[2] = "-it"
	}
	for _, e := range o.Env {
		argv = append(argv, "-e", e.Name)
	}
	if o.Cwd != "" {
		argv = append(argv, "-w", o.Cwd)
	}
	return append(argv, container, "bash", "-ic", o.Script)
}

// Check fails with a message naming the container and the machine when the
// container is missing or not running, or when docker itself is missing.
func Check(ctx context.Context, host executor.Host, container string) error {
	res, err := host.Run(ctx, executor.Command{Args: []string{"docker", "inspect", "-f", "{{.State.Status}}", "--", container}})
	if err != nil {
		return err
	}
	out := strings.TrimSpace(string(res.Stdout))
	errText := strings.TrimSpace(string(res.Stderr))
	switch {
	case res.ExitCode == 127:
		return fmt.Errorf("docker is not installed on machine %s (needed for container %q)", host.Machine(), container)
	case res.ExitCode != 0 && strings.Contains(strings.ToLower(errText), "no such"):
		return fmt.Errorf("container %q does not exist on machine %s: start it first (launcher never starts containers)", container, host.Machine())
	case res.ExitCode != 0:
		return fmt.Errorf("cannot inspect container %q on machine %s: %s", container, host.Machine(), errText)
	case out != "running":
		return fmt.Errorf("container %q on machine %s is not running (state: %s): start it first", container, host.Machine(), out)
	}
	return nil
}
