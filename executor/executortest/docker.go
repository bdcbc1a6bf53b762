package executortest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Dockerd is a private Docker engine for the tests: its own data root and
// socket, no bridge, no iptables changes, and an image imported from a local
// rootfs (no registry is reachable).
type Dockerd struct {
	Dir    string
	Socket string
	Image  string
	cmd    *exec.Cmd
}

// Host is the DOCKER_HOST value for this engine.
func (d *Dockerd) Host() string { return "unix://" + d.Socket }

// Docker runs the docker CLI against this engine.
func (d *Dockerd) Docker(args ...string) (string, error) {
	cmd := exec.Command("docker", append([]string{"-H", d.Host()}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Run starts a container from the test image that sleeps forever.
func (d *Dockerd) Run(t testing.TB, name string) {
	t.Helper()
	if out, err := d.Docker("run", "-d", "--name", name, d.Image, "sleep", "1000000"); err != nil {
		t.Fatalf("docker run %s: %v: %s", name, err, out)
	}
}

// StartDockerd starts dockerd and imports the test image (bash, busybox).
// It is stopped when the test ends.
func StartDockerd(t testing.TB) *Dockerd {
	t.Helper()
	RequireTool(t, "dockerd", "docker", "busybox")
	if os.Geteuid() != 0 {
		Skip(t, "dockerd needs root")
	}
	dir, err := os.MkdirTemp("", "ltdock")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(dir, 0o755)
	d := &Dockerd{Dir: dir, Socket: filepath.Join(dir, "docker.sock"), Image: "launcher-test:latest"}
	logf, _ := os.Create(filepath.Join(dir, "dockerd.log"))
	d.cmd = exec.Command("dockerd", "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false",
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"), "-H", d.Host())
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		Skip(t, "dockerd cannot start: "+err.Error())
	}
	exited := make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		if out, err := d.Docker("ps", "-aq"); err == nil {
			if ids := strings.Fields(out); len(ids) > 0 {
				_, _ = d.Docker(append([]string{"rm", "-f"}, ids...)...)
			}
		}
		_ = d.cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = d.cmd.Process.Kill()
			<-exited
		}
		_ = exec.Command("umount", "-R", filepath.Join(dir, "data")).Run()
		os.RemoveAll(dir)
	})
	up := Poll(func() bool {
		select {
		case <-exited:
			return true
		default:
		}
		_, err := d.Docker("info")
		return err == nil
	})
	select {
	case <-exited:
		log, _ := os.ReadFile(filepath.Join(dir, "dockerd.log"))
		Skip(t, "dockerd exited: "+lastLines(string(log), 15))
	default:
	}
	if !up {
		log, _ := os.ReadFile(filepath.Join(dir, "dockerd.log"))
		t.Fatalf("dockerd does not answer: %s", lastLines(string(log), 15))
	}
	// The socket is reached by the SSH test user too.
	_ = os.Chmod(d.Socket, 0o666)
	if err := d.importImage(); err != nil {
		t.Fatalf("importing the test image: %v", err)
	}
	return d
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// importImage builds a rootfs with the host's bash (and the libraries it
// links), busybox for the usual tools, and imports it.
func (d *Dockerd) importImage() error {
	root := filepath.Join(d.Dir, "rootfs")
	for _, sub := range []string{"bin", "tmp", "etc", "root", "proc", "dev", "sys"} {
		if err := os.MkdirAll(filepath.Join(root, sub), 0o755); err != nil {
			return err
		}
	}
	_ = os.Chmod(filepath.Join(root, "tmp"), 0o1777)
	bash, err := exec.LookPath("bash")
	if err != nil {
		return err
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return err
	}
	copyFile := func(src, dst string, mode os.FileMode) error {
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, data, mode)
	}
	if err := copyFile(bash, filepath.Join(root, "bin", "bash"), 0o755); err != nil {
		return err
	}
	if err := copyFile(busybox, filepath.Join(root, "bin", "busybox"), 0o755); err != nil {
		return err
	}
	out, err := exec.Command("ldd", bash).Output()
	if err != nil {
		return fmt.Errorf("ldd bash: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "/") {
				if err := copyFile(f, filepath.Join(root, f), 0o755); err != nil {
					return err
				}
			}
		}
	}
	for _, a := range []string{"sh", "sleep", "kill", "grep", "cat", "tr", "env", "ps", "echo", "true", "false", "id",
		"ls", "touch", "rm", "mkdir", "date", "printf", "test", "seq", "head", "tail", "wc", "sed", "awk", "timeout", "pwd", "hostname"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/bash\n"), 0o644); err != nil {
		return err
	}
	tar := exec.Command("tar", "-C", root, "-c", ".")
	var tarOut bytes.Buffer
	tar.Stdout = &tarOut
	if err := tar.Run(); err != nil {
		return fmt.Errorf("tar: %w", err)
	}
	imp := exec.Command("docker", "-H", d.Host(), "import", "-c", "ENV PATH=/bin", "-c", `CMD ["/bin/bash"]`, "-", d.Image)
	imp.Stdin = &tarOut
	if out, err := imp.CombinedOutput(); err != nil {
		return fmt.Errorf("docker import: %w: %s", err, out)
	}
	return nil
}
