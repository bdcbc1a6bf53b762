package pool

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// UnsafePathError is a local path launcher refuses to use: a relative state
// directory, or a place (or a tmux socket) another user could control.
type UnsafePathError struct {
	Path string
	Msg  string
}

func (e *UnsafePathError) Error() string { return fmt.Sprintf("refusing to use %s: %s", e.Path, e.Msg) }

// CheckStateDir refuses a relative $LAUNCHER_STATE_DIR: the pane's log
// writer runs in another directory, so a relative path would lose every log.
func CheckStateDir() error {
	if d := os.Getenv("LAUNCHER_STATE_DIR"); d != "" && !filepath.IsAbs(d) {
		return &UnsafePathError{Path: d, Msg: "LAUNCHER_STATE_DIR must be an absolute path (e.g. $PWD/" + d + ")"}
	}
	return nil
}

// PrepareSocket makes an explicit tmux socket path usable: absolute, its
// folder created (0700) when missing, the folder safe (see SafeDir) and an
// existing socket owned by the caller, so launcher never drives another
// user's tmux server.
func PrepareSocket(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(abs)
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", &UnsafePathError{Path: dir, Msg: fmt.Sprintf("cannot create the tmux socket's folder: %v", err)}
		}
	}
	if err := SafeDir(dir); err != nil {
		return "", err
	}
	fi, err := os.Lstat(abs)
	if os.IsNotExist(err) {
		return abs, nil
	}
	if err != nil {
		return "", &UnsafePathError{Path: abs, Msg: err.Error()}
	}
	st := fi.Sys().(*syscall.Stat_t)
	switch {
	case fi.Mode()&os.ModeSocket == 0:
		return "", &UnsafePathError{Path: abs, Msg: "it is not a socket (mode " + fi.Mode().String() + ")"}
	case int(st.Uid) != os.Getuid():
		return "", &UnsafePathError{Path: abs, Msg: fmt.Sprintf("the tmux server socket is owned by uid %d, not by you (uid %d)", st.Uid, os.Getuid())}
	}
	return abs, nil
}

// SafeDir applies OpenSSH's StrictModes rule to dir: it must be the
// caller's (or root's) and not group/world writable, and every folder above it root's
// or the caller's and not group/world writable, unless root-owned and
// sticky like /tmp (nobody else can replace what is in it).
func SafeDir(dir string) error {
	p, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return &UnsafePathError{Path: dir, Msg: err.Error()}
	}
	me := os.Getuid()
	for first := true; ; first = false {
		fi, err := os.Stat(p)
		if err != nil {
			return &UnsafePathError{Path: p, Msg: err.Error()}
		}
		st := fi.Sys().(*syscall.Stat_t)
		uid, mode := int(st.Uid), fi.Mode()
		writable := mode.Perm()&0o022 != 0
		switch {
		case first && uid != me && uid != 0:
			return &UnsafePathError{Path: p, Msg: fmt.Sprintf("it is owned by uid %d, not by you (uid %d): use a folder of your own", uid, me)}
		case first && writable:
			return &UnsafePathError{Path: p, Msg: fmt.Sprintf("its mode %04o lets other users write in it: chmod go-w %s", mode.Perm(), p)}
		case !first && uid != me && uid != 0:
			return &UnsafePathError{Path: p, Msg: fmt.Sprintf("a folder above it is owned by uid %d: other users could replace it", uid)}
		case !first && writable && (uid != 0 || mode&os.ModeSticky == 0):
			return &UnsafePathError{Path: p, Msg: fmt.Sprintf("a folder above it (mode %04o) is writable by other users", mode.Perm())}
		}
		parent := filepath.Dir(p)
		if parent == p {
			return nil
		}
		p = parent
	}
}

// SafeFile applies the same rule to a file the caller will run (a Lua
// plugin): a regular file, the caller's or root's, not group/world
// writable, in a SafeDir.
func SafeFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return &UnsafePathError{Path: path, Msg: err.Error()}
	}
	st := fi.Sys().(*syscall.Stat_t)
	me := os.Getuid()
	switch {
	case !fi.Mode().IsRegular():
		return &UnsafePathError{Path: path, Msg: "it is not a regular file"}
	case int(st.Uid) != me && st.Uid != 0:
		return &UnsafePathError{Path: path, Msg: fmt.Sprintf("it is owned by uid %d, not by you (uid %d)", st.Uid, me)}
	case fi.Mode().Perm()&0o022 != 0:
		return &UnsafePathError{Path: path, Msg: fmt.Sprintf("its mode %04o lets other users change it: chmod go-w %s", fi.Mode().Perm(), path)}
	}
	return SafeDir(filepath.Dir(path))
}
