package tmux

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/robotlauncher/launcher/executor"
	"github.com/robotlauncher/launcher/executor/executortest"
	"github.com/robotlauncher/launcher/executor/local"
)

// TestPrepareLocalMatchesTheScript: the local fast path of prepare.sh
// accepts and refuses exactly what the script does, with its message.
func TestPrepareLocalMatchesTheScript(t *testing.T) {
	if os.Getuid() != 0 {
		executortest.Skip(t, "needs root to give directories to another user")
	}
	const nobody = 65534
	cases := []struct {
		name  string
		want  int                      // exit code: 0 accepted, 3 refused
		setup func(base string) string // returns the directory to prepare
	}{
		{"fresh", 0, func(b string) string { return filepath.Join(b, "a", "b") }},
		{"world-writable", 3, func(b string) string {
			d := filepath.Join(b, "ww")
			os.Mkdir(d, 0o777)
			os.Chmod(d, 0o777)
			return d
		}},
		{"another user's", 3, func(b string) string {
			d := filepath.Join(b, "theirs")
			os.Mkdir(d, 0o700)
			os.Chown(d, nobody, nobody)
			return d
		}},
		{"a symbolic link", 3, func(b string) string {
			os.Mkdir(filepath.Join(b, "real"), 0o700)
			os.Symlink(filepath.Join(b, "real"), filepath.Join(b, "link"))
			return filepath.Join(b, "link")
		}},
		{"a writable parent", 3, func(b string) string {
			p := filepath.Join(b, "open")
			os.Mkdir(p, 0o777)
			os.Chmod(p, 0o777)
			return filepath.Join(p, "state")
		}},
		{"a parent of another user", 3, func(b string) string {
			p := filepath.Join(b, "otherparent")
			os.Mkdir(p, 0o755)
			os.Chown(p, nobody, nobody)
			d := filepath.Join(p, "state")
			os.Mkdir(d, 0o700)
			return d
		}},
		{"a sticky root parent", 0, func(b string) string {
			p := filepath.Join(b, "sticky")
			os.Mkdir(p, 0o777)
			os.Chmod(p, 0o777|os.ModeSticky)
			return filepath.Join(p, "state")
		}},
	}
	helpers := [][2]string{{"h1", "one\n"}, {"h2", "two"}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			results := map[string][2]string{}
			for _, impl := range []string{"script", "local"} {
				base, err := os.MkdirTemp("", "prep")
				if err != nil {
					t.Fatal(err)
				}
				defer os.RemoveAll(base)
				os.Chmod(base, 0o755)
				d := c.setup(base)
				var code int
				var stderr string
				if impl == "local" {
					res := prepareLocal("install", d, helpers, filepath.Join(d, "logs", "s"))
					code, stderr = res.ExitCode, string(res.Stderr)
				} else {
					cmd := exec.Command("sh", "-c", prepareScript, "sh", "install:"+filepath.Join(d, "logs", "s"), d, "h1", "one\n", "h2", "two")
					out, err := cmd.CombinedOutput()
					var ee *exec.ExitError
					if errors.As(err, &ee) {
						code = ee.ExitCode()
					}
					stderr = string(out)
					if code == 0 {
						stderr = ""
					}
				}
				if code == 0 {
					for _, h := range helpers {
						if b, err := os.ReadFile(filepath.Join(d, "bin", h[0])); err != nil || string(b) != h[1] {
							t.Errorf("%s: helper %s: %q %v", impl, h[0], b, err)
						}
					}
				}
				// The messages name paths under each run's own base.
				results[impl] = [2]string{strings.Repeat("x", code), strings.ReplaceAll(strings.TrimSpace(stderr), base, "BASE")}
			}
			if got := len(results["local"][0]); got != c.want {
				t.Errorf("exit %d, want %d: %s", got, c.want, results["local"][1])
			}
			if results["script"] != results["local"] {
				t.Errorf("script: exit %d %q\nlocal:  exit %d %q", len(results["script"][0]), results["script"][1], len(results["local"][0]), results["local"][1])
			}
		})
	}
}

// TestPerlProbeIsKept: the local install asks perl once whether it runs
// the writer (its --probe) and keeps the yes beside the writer with the
// identity of that perl: the next install starts no perl. A changed perl
// is asked again, and a perl that cannot load what the writer needs (here
// Fcntl shadowed by one that dies) gets the bash writer, and no stamp.
func TestPerlProbeIsKept(t *testing.T) {
	real, err := exec.LookPath("perl")
	if err != nil {
		executortest.Skip(t, "no perl")
	}
	tmp := t.TempDir()
	fake, counter, lib := filepath.Join(tmp, "path"), filepath.Join(tmp, "count"), filepath.Join(tmp, "lib")
	for _, d := range []string{fake, lib} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// perl on PATH: counts its starts, then runs the real one.
	writePerl := func(env string) {
		script := "#!/bin/sh\necho x >> " + counter + "\n" + env + "exec " + real + " \"$@\"\n"
		if err := os.WriteFile(filepath.Join(fake, "perl"), []byte(script), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writePerl("")
	t.Setenv("PATH", fake+":"+os.Getenv("PATH"))
	starts := func() int { b, _ := os.ReadFile(counter); return strings.Count(string(b), "x") }
	state := filepath.Join(tmp, "state")
	name := "logwriter.pl-test"
	stamp := filepath.Join(state, "bin", "probed-"+name)
	install := func() string {
		t.Helper()
		res := prepareLocal("install", state, [][2]string{{name, perlWriter}, {"prologue.bash-test", prologue}}, "")
		if res.ExitCode != 0 {
			t.Fatalf("install: %d %s", res.ExitCode, res.Stderr)
		}
		return strings.TrimSpace(string(res.Stdout))
	}
	if w := install(); w != "perl" || starts() != 1 {
		t.Fatalf("first install: writer %q after %d perl starts, want perl after 1", w, starts())
	}
	if _, err := os.Stat(stamp); err != nil {
		t.Fatalf("no stamp: %v", err)
	}
	if w := install(); w != "perl" || starts() != 1 {
		t.Fatalf("second install: writer %q after %d perl starts, want perl and no new start", w, starts())
	}
	// Another perl (here one whose Fcntl dies): asked again, bash, no stamp.
	if err := os.WriteFile(filepath.Join(lib, "Fcntl.pm"), []byte("die 'no Fcntl here';\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	writePerl("PERL5LIB=" + lib + " export PERL5LIB\n")
	if w := install(); w != "bash" || starts() != 2 {
		t.Fatalf("a perl without Fcntl: writer %q after %d perl starts, want bash after 2", w, starts())
	}
	if _, err := os.Stat(stamp); !os.IsNotExist(err) {
		t.Fatalf("the stamp outlived a failed probe: %v", err)
	}
	// The script prepare.sh (remote machines) chooses the same way.
	for _, c := range []struct{ env, want string }{{"PERL5LIB=" + lib + " export PERL5LIB\n", "bash"}, {"", "perl"}} {
		writePerl(c.env)
		out, err := exec.Command("sh", "-c", prepareScript, "sh", "install", filepath.Join(tmp, "remote"), name, perlWriter).Output()
		if err != nil || strings.TrimSpace(string(out)) != c.want {
			t.Errorf("prepare.sh with %q: %q %v, want %s", c.env, out, err, c.want)
		}
	}
}

// TestLocalPathsMatchTheRule: the local machine's state directory and home,
// read from the environment without a shell, are what sh makes of the rule
// remote machines run, variable by variable unset, empty or set.
func TestLocalPathsMatchTheRule(t *testing.T) {
	vals := []*string{nil, new(string), ptr("/some where/x")}
	for _, home := range []*string{nil, ptr("/home/robot")} {
		for _, sd := range vals {
			for _, xdg := range vals {
				env := map[string]string{}
				environ := []string{} // not nil: nil would be this process's environment
				for k, v := range map[string]*string{"HOME": home, "LAUNCHER_STATE_DIR": sd, "XDG_STATE_HOME": xdg} {
					if v != nil {
						env[k] = *v
						environ = append(environ, k+"="+*v)
					}
				}
				cmd := exec.Command("sh", "-c", resolveRule)
				cmd.Env = environ
				out, err := cmd.Output()
				if err != nil {
					t.Fatal(err)
				}
				state, h := localPaths(func(k string) string { return env[k] })
				if want := string(out); want != state+"\n"+h+"\n" {
					t.Errorf("env %q: sh says %q, localPaths %q %q", environ, want, state, h)
				}
			}
		}
	}
}

func ptr(s string) *string { return &s }

// TestPerlProbeOnAFullDisk: a yes that cannot be kept (the disk is full)
// still chooses the Perl writer, leaves no half-written file, and is
// asked again next time.
func TestPerlProbeOnAFullDisk(t *testing.T) {
	executortest.RequireTool(t, "perl")
	dir := smallTmpfs(t, "128k")
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	name := "logwriter.pl-test"
	helpers := [][2]string{{name, perlWriter}}
	if res := prepareLocal("install", state, helpers, ""); strings.TrimSpace(string(res.Stdout)) != "perl" {
		t.Fatalf("first install: %d %q %s", res.ExitCode, res.Stdout, res.Stderr)
	}
	stamp := filepath.Join(state, "bin", "probed-"+name)
	if err := os.Remove(stamp); err != nil {
		t.Fatal(err)
	}
	fillDisk(t, dir)
	for i := 0; i < 2; i++ {
		if res := prepareLocal("install", state, helpers, ""); res.ExitCode != 0 || strings.TrimSpace(string(res.Stdout)) != "perl" {
			t.Fatalf("install on a full disk: %d %q %s", res.ExitCode, res.Stdout, res.Stderr)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(state, "bin"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != name {
		t.Errorf("bin holds %q, want the writer alone", names)
	}
	// A new helper cannot be written there: the install fails, here and in
	// prepare.sh, and leaves nothing half-written.
	big := [][2]string{{name, perlWriter}, {"prologue.bash-new", "# a new helper\n"}}
	res := prepareLocal("install", state, big, "")
	out, err := exec.Command("sh", "-c", prepareScript, "sh", "install", state, big[0][0], big[0][1], big[1][0], big[1][1]).CombinedOutput()
	if res.ExitCode == 0 || err == nil {
		t.Errorf("a helper written to a full disk: local exit %d, script %v %s", res.ExitCode, err, out)
	}
	ents, _ = os.ReadDir(filepath.Join(state, "bin"))
	names = names[:0]
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != name {
		t.Errorf("after failed installs bin holds %q, want the writer alone", names)
	}
}

// TestEnvFileOnAFullDisk: an env file that cannot be written whole (the
// disk is full) is an error and leaves no file. (A remote spawn's is
// written by writeFiles, which removes what it wrote on failure.)
func TestEnvFileOnAFullDisk(t *testing.T) {
	dir := smallTmpfs(t, "64k")
	fillDisk(t, dir)
	m, err := New(context.Background(), local.Host{}, Options{StateDir: filepath.Join(t.TempDir(), "state"), Home: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "run.env")
	if err := m.writeEnvFile(path, filepath.Join(t.TempDir(), "p.log"), []executor.EnvVar{{Name: "SECRET", Value: "x"}}); err == nil {
		t.Error("an env file written to a full disk is no error")
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("the env file stays after a failed write: %v", err)
	}
}

// TestRemoteEnvFilesOnAFullDisk: the script that writes a remote spawn's
// env file before tmux makes its window (writeFiles) fails on a full disk,
// names the spawn, leaves no file and runs nothing. It ran tmux with an
// empty env file: the pane then ran no command and ended with 0.
func TestRemoteEnvFilesOnAFullDisk(t *testing.T) {
	dir := smallTmpfs(t, "64k")
	ran := filepath.Join(t.TempDir(), "ran")
	write := func() (executor.Result, string) {
		path := filepath.Join(dir, "run.env")
		req := &batchReq{token: "tok1", file: &envWrite{path: path, log: filepath.Join(dir, "p.log"), text: envFileText([]executor.EnvVar{{Name: "LAUNCHER_CMD", Value: "sleep 600"}})}}
		res, err := local.Host{}.Run(context.Background(), writeThenRun([]*batchReq{req}, []string{"touch", ran}))
		if err != nil {
			t.Fatal(err)
		}
		return res, path
	}
	// With room, the file is written and the command runs.
	res, path := write()
	if b, err := os.ReadFile(path); res.ExitCode != 0 || err != nil || !strings.Contains(string(b), "sleep 600") {
		t.Fatalf("with room: exit %d %s; file %q %v", res.ExitCode, res.Stderr, b, err)
	}
	if _, err := os.Stat(ran); err != nil {
		t.Fatalf("with room, the command did not run: %v", err)
	}
	os.Remove(path)
	os.Remove(ran)
	fillDisk(t, dir)
	res, path = write()
	if f := fileFailures(res); !strings.Contains(f["tok1"], "disk full") {
		t.Errorf("on a full disk: exit %d, failures %q, stderr %s", res.ExitCode, f, res.Stderr)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("the env file stays: %v", err)
	}
	if _, err := os.Stat(ran); !os.IsNotExist(err) {
		t.Errorf("the command ran after a failed write: %v", err)
	}
}
