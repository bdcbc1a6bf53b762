package ssh

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"
)

// target is where a machine string leads after ~/.ssh/config is applied.
type target struct {
	Alias         string // the host part as written (the ssh_config Host)
	User          string
	Host          string // HostName
	Port          int
	IdentityFiles []string
	ProxyJump     []string // hops, outermost first
	KnownHosts    []string // UserKnownHostsFile from ssh_config
	AcceptNew     bool     // StrictHostKeyChecking accept-new
}

func (t target) addr() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

func (t target) String() string { return t.User + "@" + t.addr() }

// sshConfig is the user's and the system's ssh client configuration.
type sshConfig struct {
	files []*ssh_config.Config
	home  string
}

func loadSSHConfig(home string) (*sshConfig, error) {
	c := &sshConfig{home: home}
	for _, p := range []string{filepath.Join(home, ".ssh", "config"), "/etc/ssh/ssh_config"} {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		cfg, err := ssh_config.Decode(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("cannot parse %s: %w", p, err)
		}
		c.files = append(c.files, cfg)
	}
	return c, nil
}

func (c *sshConfig) get(alias, key string) string {
	for _, f := range c.files {
		if v, err := f.Get(alias, key); err == nil && v != "" {
			return v
		}
	}
	return ""
}

func (c *sshConfig) getAll(alias, key string) []string {
	var out []string
	for _, f := range c.files {
		if vs, err := f.GetAll(alias, key); err == nil {
			out = append(out, vs...)
		}
	}
	return out
}

// expand replaces ~ and the %h %u %p %r %d tokens ssh_config allows in paths.
func (c *sshConfig) expand(s string, t target, localUser string) string {
	if strings.HasPrefix(s, "~/") {
		s = filepath.Join(c.home, s[2:])
	}
	r := strings.NewReplacer("%h", t.Host, "%u", localUser, "%p", strconv.Itoa(t.Port), "%r", t.User, "%d", c.home, "%%", "%")
	return r.Replace(s)
}

// splitMachine splits user@host:port forms; port 0 means "not given".
func splitMachine(machine string) (userPart, host string, port int, err error) {
	hostPart := machine
	if i := strings.LastIndex(machine, "@"); i >= 0 {
		userPart, hostPart = machine[:i], machine[i+1:]
		if userPart == "" || hostPart == "" {
			return "", "", 0, fmt.Errorf("machine %q: use user@host or user@host:port", machine)
		}
	}
	switch {
	case strings.HasPrefix(hostPart, "["):
		h, p, err := net.SplitHostPort(hostPart)
		if err != nil {
			end := strings.Index(hostPart, "]")
			if end < 0 || end != len(hostPart)-1 {
				return "", "", 0, fmt.Errorf("machine %q: bad [address]", machine)
			}
			return userPart, hostPart[1:end], 0, nil
		}
		host = h
		if port, err = strconv.Atoi(p); err != nil {
			return "", "", 0, fmt.Errorf("machine %q: bad port %q", machine, p)
		}
	case strings.Count(hostPart, ":") == 1:
		h, p, _ := strings.Cut(hostPart, ":")
		host = h
		if port, err = strconv.Atoi(p); err != nil || port < 1 || port > 65535 {
			return "", "", 0, fmt.Errorf("machine %q: bad port %q", machine, p)
		}
	default:
		host = hostPart // a name, an IPv4 address, or a bare IPv6 address
	}
	return userPart, host, port, nil
}

func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return os.Getenv("USER")
}

// resolve turns a machine string into a target, applying ssh_config: an
// alias's HostName, User, Port, IdentityFile, ProxyJump,
// UserKnownHostsFile and StrictHostKeyChecking, the way ssh(1) would.
func (c *sshConfig) resolve(machine string) (target, error) {
	u, host, port, err := splitMachine(machine)
	if err != nil {
		return target{}, err
	}
	t := target{Alias: host, User: u, Host: host, Port: port}
	if hn := c.get(host, "HostName"); hn != "" {
		t.Host = strings.ReplaceAll(hn, "%h", host)
	}
	if t.User == "" {
		t.User = c.get(host, "User")
	}
	local := currentUser()
	if t.User == "" {
		t.User = local
	}
	if t.Port == 0 {
		if p := c.get(host, "Port"); p != "" {
			if t.Port, err = strconv.Atoi(p); err != nil {
				return target{}, fmt.Errorf("ssh config: Port %q for %s is not a number", p, host)
			}
		} else {
			t.Port = 22
		}
	}
	for _, f := range c.getAll(host, "IdentityFile") {
		t.IdentityFiles = append(t.IdentityFiles, c.expand(f, t, local))
	}
	if pj := c.get(host, "ProxyJump"); pj != "" && !strings.EqualFold(pj, "none") {
		for _, hop := range strings.Split(pj, ",") {
			if hop = strings.TrimSpace(hop); hop != "" {
				t.ProxyJump = append(t.ProxyJump, strings.TrimPrefix(hop, "ssh://"))
			}
		}
	}
	for _, f := range c.getAll(host, "UserKnownHostsFile") {
		for _, p := range strings.Fields(f) {
			if p != "none" {
				t.KnownHosts = append(t.KnownHosts, c.expand(p, t, local))
			}
		}
	}
	t.AcceptNew = strings.EqualFold(c.get(host, "StrictHostKeyChecking"), "accept-new")
	return t, nil
}
