package ssh

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostKeys verifies server keys against known_hosts files. Unknown keys are
// refused unless acceptNew is set (then recorded, like
// StrictHostKeyChecking=accept-new); changed keys are always refused.
type hostKeys struct {
	files     []string
	acceptNew bool
	mu        sync.Mutex // serialises appends to the first file
}

// knownKeyAlgorithms returns the host key algorithms to offer for addr:
// those of the keys known_hosts has for it. Without this, a server that
// prefers a key type we do not know would look like a changed key.
func (k *hostKeys) knownKeyAlgorithms(hostport string) []string {
	cb, err := k.callback()
	if err != nil {
		return nil
	}
	// A throwaway key never matches: the error lists the known keys.
	pub, _, _ := ed25519.GenerateKey(nil)
	dummy, _ := ssh.NewPublicKey(pub)
	err = cb(hostport, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, dummy)
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) || len(ke.Want) == 0 {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			algos = append(algos, a)
		}
	}
	for _, w := range ke.Want {
		switch t := w.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			add(ssh.KeyAlgoRSASHA512)
			add(ssh.KeyAlgoRSASHA256)
			add(ssh.KeyAlgoRSA)
		default:
			add(t)
		}
	}
	return algos
}

func (k *hostKeys) callback() (ssh.HostKeyCallback, error) {
	var existing []string
	for _, f := range k.files {
		if _, err := os.Stat(f); err == nil {
			existing = append(existing, f)
		}
	}
	if len(existing) == 0 {
		return func(string, net.Addr, ssh.PublicKey) error {
			return &knownhosts.KeyError{}
		}, nil
	}
	return knownhosts.New(existing...)
}

// HostKeyError explains a refused host key and how to fix it.
type HostKeyError struct {
	Host    string
	Changed bool
	Msg     string
}

func (e *HostKeyError) Error() string { return e.Msg }

func (k *hostKeys) verify(hostport string, remote net.Addr, key ssh.PublicKey) error {
	cb, err := k.callback()
	if err != nil {
		return fmt.Errorf("cannot read known_hosts (%s): %w", strings.Join(k.files, ", "), err)
	}
	err = cb(hostport, remote, key)
	var ke *knownhosts.KeyError
	if err == nil || !errors.As(err, &ke) {
		return err
	}
	host, port := splitHostPort(hostport)
	fp := ssh.FingerprintSHA256(key)
	if len(ke.Want) > 0 {
		return &HostKeyError{Host: hostport, Changed: true, Msg: fmt.Sprintf(
			"HOST KEY CHANGED for %s: it now presents %s %s, known_hosts (%s:%d) has another key. This can be a man-in-the-middle attack, "+
				"or the machine was reinstalled. If you are sure, remove the old key with `ssh-keygen -R %s` and connect again",
			hostport, key.Type(), fp, ke.Want[0].Filename, ke.Want[0].Line, knownhosts.Normalize(hostport))}
	}
	if !k.acceptNew {
		scan := "ssh-keyscan " + host
		if port != 22 {
			scan = "ssh-keyscan -p " + strconv.Itoa(port) + " " + host
		}
		return &HostKeyError{Host: hostport, Msg: fmt.Sprintf(
			"host key of %s is not known (%s %s). Check the fingerprint, then add it with `%s >> %s`, "+
				"or connect once with `ssh -p %d %s`, or pass --accept-new-host-keys (LAUNCHER_ACCEPT_NEW_HOST_KEYS=1) to record new keys",
			hostport, key.Type(), fp, scan, k.target(), port, host)}
	}
	return k.record(hostport, remote, key)
}

func (k *hostKeys) target() string {
	if len(k.files) == 0 {
		return "~/.ssh/known_hosts"
	}
	return k.files[0]
}

// record appends a new key to the first known_hosts file.
func (k *hostKeys) record(hostport string, remote net.Addr, key ssh.PublicKey) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.files) == 0 {
		return errors.New("no known_hosts file to record the new host key in")
	}
	path := k.files[0]
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("cannot record the host key of %s: %w", hostport, err)
	}
	defer f.Close()
	_, err = fmt.Fprintln(f, knownhosts.Line([]string{knownhosts.Normalize(hostport)}, key))
	return err
}

func splitHostPort(hostport string) (string, int) {
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport, 22
	}
	n, _ := strconv.Atoi(p)
	return h, n
}
