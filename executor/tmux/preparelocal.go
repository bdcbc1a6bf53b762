package tmux

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/robotlauncher/launcher/executor"
)

// prepareLocal does what scripts/prepare.sh does, for the local machine,
// without a process per directory level (a local bring-up ran stat and
// dirname some fifty times for it). The checks are the script's: the
// directory must be the caller's and not group/world writable, and every
// directory above it root's or the caller's and not writable by others
// (a root-owned sticky directory is fine).
func prepareLocal(mode, dir string, helpers [][2]string, logDir string) executor.Result {
	refusal := errors.New("refused")
	var stderr bytes.Buffer
	refuse := func(p, why string) error {
		fmt.Fprintf(&stderr, "launcher: refusing to use %s: %s\n", p, why)
		return refusal
	}
	me := os.Getuid()
	check := func(d string) error {
		if fi, err := os.Lstat(d); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			return refuse(d, "it is a symbolic link (use the real path)")
		}
		p, err := filepath.EvalSymlinks(d)
		if err == nil {
			p, err = filepath.Abs(p)
		}
		if err != nil {
			return refuse(d, "cannot enter it")
		}
		for first := true; ; first = false {
			var st syscall.Stat_t
			if err := syscall.Stat(p, &st); err != nil {
				return refuse(p, "cannot read its owner and mode")
			}
			owner, m := int(st.Uid), st.Mode&0o7777
			if first {
				if owner != me {
					return refuse(p, fmt.Sprintf("it is owned by uid %d, not by you (uid %d): use a directory of your own", owner, me))
				}
				if m&0o22 != 0 {
					return refuse(p, fmt.Sprintf("its mode %o lets other users write in it: chmod go-w %s", m, p))
				}
			} else {
				if owner != me && owner != 0 {
					return refuse(p, fmt.Sprintf("a directory above the state directory is owned by uid %d: other users could replace it", owner))
				}
				if m&0o22 != 0 && (owner != 0 || m&0o1000 == 0) {
					return refuse(p, fmt.Sprintf("a directory above the state directory (mode %o) is writable by other users", m))
				}
			}
			if p == "/" {
				return nil
			}
			p = filepath.Dir(p)
		}
	}
	mkcheck := func(d string) error {
		if err := os.MkdirAll(d, 0o700); err != nil {
			fmt.Fprintf(&stderr, "mkdir: %v\n", err)
			return err
		}
		return check(d)
	}
	fail := func(err error) executor.Result {
		code := 1
		if errors.Is(err, refusal) {
			code = 3
		}
		return executor.Result{ExitCode: code, Stderr: stderr.Bytes()}
	}
	if err := mkcheck(dir); err != nil {
		return fail(err)
	}
	if mode != "install" {
		return executor.Result{}
	}
	for _, sub := range []string{"bin", "run"} {
		if err := mkcheck(filepath.Join(dir, sub)); err != nil {
			return fail(err)
		}
	}
	for _, h := range helpers {
		f := filepath.Join(dir, "bin", h[0])
		if fi, err := os.Lstat(f); err == nil && fi.Mode()&os.ModeSymlink == 0 {
			if b, err := os.ReadFile(f); err == nil && string(b) == h[1] {
				continue
			}
		}
		tmp := fmt.Sprintf("%s.tmp.%d", f, os.Getpid())
		_ = os.Remove(tmp)
		err := writeExcl(tmp, h[1])
		if err == nil {
			err = os.Rename(tmp, f)
		}
		if err != nil {
			// A full disk: nothing half-written stays.
			_ = os.Remove(tmp)
			fmt.Fprintf(&stderr, "%v\n", err)
			return fail(err)
		}
	}
	if logDir != "" {
		if err := mkcheck(logDir); err != nil {
			return fail(err)
		}
	}
	writer := "bash"
	for _, h := range helpers {
		if strings.HasPrefix(h[0], "logwriter.pl-") && perlRuns(filepath.Join(dir, "bin"), h[0]) {
			writer = "perl"
		}
	}
	return executor.Result{Stdout: []byte(writer + "\n")}
}

// perlRuns reports whether this machine's perl runs the writer bin/name
// (its --probe, as prepare.sh asks). A yes is kept beside it, with the
// identity of the perl it came from: the probe is a perl start, 4 ms of
// a 21 ms `run` of one process, and the answer only changes with perl.
func perlRuns(bin, name string) bool {
	perl, err := exec.LookPath("perl")
	if err != nil {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Stat(perl, &st); err != nil {
		return false
	}
	key := fmt.Sprintf("%s %d %d %d %d.%09d\n", perl, st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
	stamp := filepath.Join(bin, "probed-"+name)
	if b, err := os.ReadFile(stamp); err == nil && string(b) == key {
		return true
	}
	if exec.Command(perl, filepath.Join(bin, name), "--probe").Run() != nil {
		_ = os.Remove(stamp)
		return false
	}
	tmp := fmt.Sprintf("%s.tmp.%d", stamp, os.Getpid())
	_ = os.Remove(tmp)
	// Not kept (a full or read-only disk): asked again next time, and no
	// half-written file left behind.
	if writeExcl(tmp, key) != nil || os.Rename(tmp, stamp) != nil {
		_ = os.Remove(tmp)
	}
	return true
}

func writeExcl(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
