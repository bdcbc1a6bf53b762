package tmux

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/robotlauncher/launcher/executor/executortest"
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
