package tmux

import (
	"context"
	"sync/atomic"

	"github.com/robotlauncher/launcher/executor"
)

type countingHost struct {
	executor.Host
	n atomic.Int64
}

func (c *countingHost) Run(ctx context.Context, cmd executor.Command) (executor.Result, error) {
	c.n.Add(1)
	return c.Host.Run(ctx, cmd)
}
