package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/robotlauncher/launcher/cmd/launcher/api"
	"github.com/robotlauncher/launcher/engine"
	"github.com/robotlauncher/launcher/engine/config"
	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/executor/pool"
)

// serveMemoryLimit is serve's soft memory limit (GOMEMLIMIT overrides it).
const serveMemoryLimit = 32 << 20

func (s *session) serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve the HTTP API, the event stream and the web dashboard (default http://" + api.DefaultListen + "/)",
		Flags: withCommon(
			&cli.StringFlag{Name: "listen", Value: api.DefaultListen, Usage: "listen on `ADDR` (host:port); an address that is not loopback requires a token"},
			&cli.StringFlag{Name: "token-file", Usage: "read the API token from `FILE` (0600, yours); without it, a non-loopback server makes one and keeps it in the state directory"},
			&cli.IntFlag{Name: "stream-queue", Value: 256, Hidden: true, Usage: "events queued per stream client before it is dropped as too slow"},
			&cli.BoolFlag{Name: "allow-exec", Usage: "let API clients (with the token, required then even on loopback) run ad-hoc commands on the config's machines and add custom processes, which serve stops when it ends; each use is an event"},
			&cli.StringSliceFlag{Name: "up", Usage: "once serving, bring `PROC` up (repeatable; at boot: tried again every 5 s while a machine is unreachable)"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageErr("serve takes no arguments (got %s)", strings.Join(c.Args().Slice(), " "))
			}
			listen := c.String("listen")
			host, port, err := net.SplitHostPort(listen)
			if err != nil || port == "" {
				return usageErr("--listen %q: write HOST:PORT, e.g. %s", listen, api.DefaultListen)
			}
			if s.getenv("GOMEMLIMIT") == "" {
				// A server that runs for months on a robot beside its
				// processes: the garbage collector works harder before
				// the heap doubles (a thousand stream clients cost what
				// their connections do, not twice that). A soft limit:
				// never an out-of-memory of its own.
				debug.SetMemoryLimit(serveMemoryLimit)
			}
			if q := c.Int("stream-queue"); q < 1 || q > 1<<16 {
				return usageErr("--stream-queue %d: write a number from 1 to 65536", q)
			}
			e, err := s.setup(c)
			if err != nil {
				return err
			}
			up := c.StringSlice("up")
			if err := s.checkNames(up); err != nil {
				return err
			}
			loopback := api.IsLoopbackAddr(listen)
			allowExec := c.Bool("allow-exec")
			// Running any command is a power a local web page must never
			// get: with --allow-exec a token is required even on loopback.
			token, announce, err := s.serveToken(c.Context, c.String("token-file"), loopback && !allowExec)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return &exitError{code: exitFailed, err: fmt.Errorf("cannot listen on %s: %w", listen, err)}
			}
			o := api.Options{Engine: e, Token: token, Loopback: loopback && token == "", Version: version, Log: s.stderr,
				StreamQueue: c.Int("stream-queue"), AllowExec: allowExec,
				Validate: func() error { _, err := config.Load(s.cfg.File); return err }}
			if s.lua != nil {
				o.Lua = s.lua
			}
			srv := api.New(c.Context, o)
			srv.Start()
			hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ConnContext: srv.ConnContext}
			served := make(chan error, 1)
			go func() { served <- hs.Serve(ln) }()
			addr := ln.Addr().String()
			if host == "" || host == "0.0.0.0" || host == "::" {
				addr = "<this machine's address>:" + port
			}
			fmt.Fprintf(s.stdout, "launcher serve: http://%s/ (%s, %d processes; API at /api/v1/, events at /api/v1/events)\n", addr, s.cfg.File, len(s.cfg.Processes))
			if announce != "" {
				fmt.Fprintln(s.stdout, announce)
			}
			if len(up) > 0 {
				go s.bringUp(c.Context, e, up)
			}
			var serveErr error
			select {
			case <-c.Context.Done():
			case serveErr = <-served:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = hs.Shutdown(ctx)
			srv.Wait()
			// Custom processes live as long as serve: no config names them
			// once it is gone.
			stopCtx, stopCancel := context.WithTimeout(context.Background(), time.Minute)
			if err := srv.StopCustom(stopCtx); err != nil {
				fmt.Fprintf(s.stderr, "launcher serve: stopping the custom processes: %v\n", err)
			}
			stopCancel()
			if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
				return serveErr
			}
			return c.Context.Err()
		},
	}
}

// serveToken finds the token a server requires: the --token-file's, or
// for a non-loopback address one kept in the local state directory
// (made, 0600, the first time; announce then shows it once).
func (s *session) serveToken(ctx context.Context, file string, loopback bool) (token, announce string, err error) {
	if file != "" {
		if err := pool.SafeFile(file); err != nil {
			return "", "", &exitError{code: exitUsage, err: fmt.Errorf("--token-file: %w", err)}
		}
		fi, err := os.Stat(file)
		if err == nil && fi.Mode().Perm()&0o077 != 0 {
			return "", "", usageErr("--token-file %s: its mode %04o lets other users read it: chmod 600 %s", file, fi.Mode().Perm(), file)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return "", "", usageErr("--token-file: %v", err)
		}
		token = strings.TrimSpace(string(data))
		if len(token) < 16 {
			return "", "", usageErr("--token-file %s: a token has at least 16 characters", file)
		}
		return token, "", nil
	}
	if loopback {
		return "", "", nil
	}
	m, err := s.pool.Machine(ctx, executor.Local)
	if err != nil {
		return "", "", err
	}
	sd, ok := m.(interface {
		StateDir(context.Context) (string, error)
	})
	if !ok {
		return "", "", errors.New("the local machine keeps no state directory for the token: use --token-file")
	}
	dir, err := sd.StateDir(ctx)
	if err != nil {
		return "", "", err
	}
	path := filepath.Join(dir, "serve-token")
	if data, err := os.ReadFile(path); err == nil {
		if err := pool.SafeFile(path); err != nil {
			return "", "", &exitError{code: exitUsage, err: err}
		}
		token = strings.TrimSpace(string(data))
		if len(token) >= 16 {
			return token, "token: as before, in " + path + " (send it as `Authorization: Bearer TOKEN`; browsers open /?token=TOKEN once)", nil
		}
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	token = hex.EncodeToString(b)
	_ = os.Remove(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return "", "", fmt.Errorf("cannot keep the token: %w", err)
	}
	_, err = f.WriteString(token + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", "", err
	}
	return token, "token: " + token + " (kept in " + path + "; send it as `Authorization: Bearer TOKEN`; browsers open /?token=TOKEN once)", nil
}

// bringUp is serve --up: the named processes are started once the server
// runs; while a machine is unreachable (the network still coming up at
// boot) the start is tried again every 5 s, for as long as serve runs. A
// process that fails for another reason is reported and left to the
// operator (the dashboard shows why).
func (s *session) bringUp(ctx context.Context, e *engine.Engine, names []string) {
	for attempt := 1; ; attempt++ {
		fmt.Fprintf(s.stdout, "launcher serve: bringing up %s\n", strings.Join(names, ", "))
		err := e.Start(ctx, names, config.Request{})
		if err == nil {
			fmt.Fprintf(s.stdout, "launcher serve: %s up\n", strings.Join(names, ", "))
			return
		}
		if ctx.Err() != nil {
			return
		}
		if !executor.IsUnavailable(err) {
			fmt.Fprintf(s.stdout, "launcher serve: bringing up %s failed: %v\n", strings.Join(names, ", "), err)
			return
		}
		fmt.Fprintf(s.stdout, "launcher serve: %v; trying again in 5s (attempt %d)\n", err, attempt)
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}
