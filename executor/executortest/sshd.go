package executortest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestUser is the non-root account the SSH tests log in as.
const TestUser = "launchertest"

var userOnce sync.Once
var userErr error

// EnsureTestUser creates TestUser (as root) and returns its uid and gid.
func EnsureTestUser(t testing.TB) (uid, gid int) {
	t.Helper()
	userOnce.Do(func() {
		if _, err := user.Lookup(TestUser); err != nil {
			if os.Geteuid() != 0 {
				userErr = fmt.Errorf("creating the test user needs root")
				return
			}
			if out, err := exec.Command("useradd", "-m", "-s", "/bin/bash", TestUser).CombinedOutput(); err != nil {
				userErr = fmt.Errorf("useradd: %w: %s", err, out)
				return
			}
		}
		// With UsePAM no, sshd refuses a locked account (useradd leaves '!').
		if out, err := exec.Command("usermod", "-p", "*", TestUser).CombinedOutput(); err != nil {
			userErr = fmt.Errorf("usermod: %w: %s", err, out)
		}
	})
	if userErr != nil {
		Skip(t, userErr.Error())
	}
	u, err := user.Lookup(TestUser)
	if err != nil {
		Skip(t, err.Error())
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// SSHD is a throwaway OpenSSH server on a loopback address: one "host" of
// the tests, with its own host key, tmux server (TMUX_TMPDIR) and launcher
// state directory.
type SSHD struct {
	Addr       string // 127.0.0.x
	Port       int
	Dir        string
	HostKeyPub string // "ssh-ed25519 AAAA…"
	TmuxTmpDir string
	StateDir   string
	cmd        *exec.Cmd
}

// Machine is the machine string for this host.
func (s *SSHD) Machine() string { return fmt.Sprintf("%s@%s:%d", TestUser, s.Addr, s.Port) }

// KnownHostsLine is the known_hosts entry for this host.
func (s *SSHD) KnownHostsLine() string {
	return fmt.Sprintf("[%s]:%d %s", s.Addr, s.Port, s.HostKeyPub)
}

// ClientKey makes an ed25519 key pair in dir and returns the private key
// path; the public key is next to it with .pub.
func ClientKey(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "client_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "launcher-test", "-f", p).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	return p
}

// SSHDOptions tune StartSSHD.
type SSHDOptions struct {
	// Env is set in every session (sshd SetEnv), e.g. DOCKER_HOST.
	Env map[string]string
}

// StartSSHD starts sshd on addr (a loopback address) with clientKey's
// public key authorised for TestUser. It is stopped at the end of the test.
func StartSSHD(t testing.TB, addr, clientKey string, o SSHDOptions) *SSHD {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		Skip(t, "/usr/sbin/sshd is not installed (make test installs openssh-server)")
	}
	if os.Geteuid() != 0 {
		Skip(t, "sshd tests run as root (they create a test user and bind sshd)")
	}
	uid, gid := EnsureTestUser(t)
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		Skip(t, "cannot create /run/sshd: "+err.Error())
	}
	dir, err := os.MkdirTemp("", "ltsshd")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(dir, 0o755) // sshd reads authorized_keys as the user
	s := &SSHD{Addr: addr, Dir: dir, TmuxTmpDir: filepath.Join(dir, "tmux"), StateDir: filepath.Join(dir, "state")}
	for _, d := range []string{s.TmuxTmpDir, s.StateDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	hostKey := filepath.Join(dir, "host_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test-host", "-f", hostKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(pub))
	s.HostKeyPub = f[0] + " " + f[1]
	clientPub, err := os.ReadFile(clientKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), clientPub, 0o644); err != nil {
		t.Fatal(err)
	}
	setenv := []string{"TMUX_TMPDIR=" + s.TmuxTmpDir, "LAUNCHER_STATE_DIR=" + s.StateDir, "LANG=C.UTF-8"}
	for k, v := range o.Env {
		setenv = append(setenv, k+"="+v)
	}
	for attempt := 0; ; attempt++ {
		s.Port = FreePort(t, addr)
		conf := fmt.Sprintf(`Port %d
ListenAddress %s
HostKey %s
AuthorizedKeysFile %s
PidFile %s
UsePAM no
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
MaxSessions 10
MaxStartups 100
SetEnv %s
LogLevel VERBOSE
`, s.Port, addr, hostKey, filepath.Join(dir, "authorized_keys"), filepath.Join(dir, "sshd.pid"), strings.Join(setenv, " "))
		cfgPath := filepath.Join(dir, "sshd_config")
		if err := os.WriteFile(cfgPath, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("/usr/sbin/sshd", "-t", "-f", cfgPath).CombinedOutput(); err != nil {
			t.Fatalf("sshd -t: %v: %s", err, out)
		}
		logf, _ := os.Create(filepath.Join(dir, "sshd.log"))
		s.cmd = exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", cfgPath)
		s.cmd.Stdout, s.cmd.Stderr = logf, logf
		if err := s.cmd.Start(); err != nil {
			t.Fatalf("sshd: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(exited) }()
		up := Poll(func() bool {
			select {
			case <-exited:
				return true
			default:
			}
			c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, strconv.Itoa(s.Port)), 200*time.Millisecond)
			if err == nil {
				c.Close()
				return true
			}
			return false
		})
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "sshd.log"))
			if attempt < 3 && strings.Contains(string(log), "Address already in use") {
				continue
			}
			t.Fatalf("sshd exited: %s", log)
		default:
		}
		if !up {
			t.Fatalf("sshd on %s:%d does not accept connections", addr, s.Port)
		}
		t.Cleanup(func() {
			_ = s.cmd.Process.Kill()
			<-exited
			// The user's tmux server of this host.
			_ = exec.Command("su", TestUser, "-c", "TMUX_TMPDIR="+s.TmuxTmpDir+" tmux kill-server").Run()
			os.RemoveAll(dir)
		})
		return s
	}
}

// FreePort returns a TCP port that is free on addr right now.
func FreePort(t testing.TB, addr string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatalf("no free port on %s: %v", addr, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// SSHLog returns the sshd log (for failure messages).
func (s *SSHD) SSHLog() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "sshd.log"))
	return string(b)
}
