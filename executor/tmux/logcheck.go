package tmux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/robotlauncher/launcher/executor"
)

// MinFreeLogSpace is the room a log's file system must have for a start:
// below it the writer would soon lose lines, so the operation is refused
// before it stops or starts anything.
const MinFreeLogSpace = 1 << 20

// LogError is a log file a start cannot write (a full or read-only file
// system, a directory that is not writable): a fault of the machine, not
// of the config.
type LogError struct {
	Machine string
	Path    string
	Msg     string
}

func (e *LogError) Error() string {
	return fmt.Sprintf("cannot write the log %s on %s: %s", e.Path, e.Machine, e.Msg)
}

// logCheckScript checks each log path given as an argument, the way
// checkLocalLog does, and prints one line per problem: "U path: why" for an
// unsafe path, "F path: why" for one that cannot be written.
const logCheckScript = `for f; do
  if [ -L "$f" ]; then echo "U $f: refusing to use $f: it is a symbolic link (remove it)"; continue; fi
  if [ -e "$f" ] && [ ! -O "$f" ]; then echo "U $f: refusing to use $f: it is owned by another user"; continue; fi
  d=${f%/*}
  while [ -n "$d" ] && [ ! -d "$d" ]; do d=${d%/*}; done
  [ -n "$d" ] || d=/
  if [ -e "$f" ] && [ ! -w "$f" ]; then echo "F $f: it is not writable"; continue; fi
  if [ ! -w "$d" ]; then echo "F $f: $d is not writable (a read-only file system?)"; continue; fi
  avail=$(df -Pk -- "$d" 2>/dev/null | awk 'NR==2 {print $4}')
  if [ -n "$avail" ] && [ "$avail" -lt $(( ` + "MINKIB" + ` )) ]; then echo "F $f: only $avail KiB free on its file system (no space left?)"; fi
done`

// CheckLogs tells, before a start, whether the logs at paths can be
// written: no symbolic link or another user's file where a log goes
// (*UnsafePathError), and a writable file system with MinFreeLogSpace
// free (*LogError). One command for all paths on a remote machine.
func (m *Machine) CheckLogs(ctx context.Context, paths []string) error {
	if len(paths) == 0 {
		return nil
	}
	if err := m.resolve(ctx); err != nil {
		return err
	}
	if executor.IsLocal(m.Host) {
		var errs []error
		for _, p := range paths {
			if err := checkLocalLog(m.Machine(), p); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	script := strings.Replace(logCheckScript, "MINKIB", fmt.Sprint(MinFreeLogSpace/1024), 1)
	res, err := m.Host.Run(ctx, executor.Command{Args: append([]string{"sh", "-c", script, "sh"}, paths...)})
	if err != nil {
		return err
	}
	var errs []error
	for _, line := range strings.Split(strings.TrimSpace(string(res.Stdout)), "\n") {
		kind, rest, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		path, msg, _ := strings.Cut(rest, ": ")
		if kind == "U" {
			errs = append(errs, &UnsafePathError{Machine: m.Machine(), Msg: msg})
		} else {
			errs = append(errs, &LogError{Machine: m.Machine(), Path: path, Msg: msg})
		}
	}
	return errors.Join(errs...)
}

// ownLocalLog refuses a local log path that is a symbolic link or another
// user's file (*UnsafePathError); it returns the file's info when it exists.
func ownLocalLog(machine, path string) (os.FileInfo, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, nil // absent: the start creates it
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		return nil, &UnsafePathError{Machine: machine, Msg: "refusing to use " + path + ": it is a symbolic link (remove it)"}
	case st != nil && int(st.Uid) != os.Getuid():
		return nil, &UnsafePathError{Machine: machine, Msg: fmt.Sprintf("refusing to use %s: it is owned by uid %d, not by you", path, st.Uid)}
	}
	return fi, nil
}

// checkLocalLog is CheckLogs for one local path.
func checkLocalLog(machine, path string) error {
	fi, err := ownLocalLog(machine, path)
	if err != nil {
		return err
	}
	if fi != nil {
		if err := syscall.Access(path, 2); err != nil {
			return &LogError{Machine: machine, Path: path, Msg: "it is not writable: " + err.Error()}
		}
	}
	// The nearest directory that exists: the rest is created at the start.
	d := filepath.Dir(path)
	for {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			break
		}
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	if err := syscall.Access(d, 2); err != nil {
		return &LogError{Machine: machine, Path: path, Msg: fmt.Sprintf("%s is not writable: %v", d, err)}
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(d, &fs); err == nil {
		const stRdonly = 1 // ST_RDONLY
		if fs.Flags&stRdonly != 0 {
			return &LogError{Machine: machine, Path: path, Msg: "its file system is read-only"}
		}
		if free := fs.Bavail * uint64(fs.Bsize); free < MinFreeLogSpace {
			return &LogError{Machine: machine, Path: path, Msg: fmt.Sprintf("only %d KiB free on its file system (no space left?)", free/1024)}
		}
	}
	return nil
}
