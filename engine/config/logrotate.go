package config

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Log rotation defaults: a robot that runs for months keeps at most
// (DefaultLogKeep+1) × DefaultLogMaxSize of each process's output, 60 MiB.
const (
	DefaultLogMaxSize = 10 << 20
	DefaultLogKeep    = 5
	// MaxLogKeep bounds log_keep: the writer renames each kept file at
	// every rotation.
	MaxLogKeep = 100
	// minLogMaxSize keeps a typo ("10" for 10 MB) from rotating at every
	// line.
	minLogMaxSize = 1024
)

// LogRotation is how a process's log is rotated: once it reaches MaxSize
// bytes the writer renames it to NAME.log.1 (and .1 to .2, …, keeping
// Keep files). MaxSize 0 never rotates.
type LogRotation struct {
	MaxSize int64 `json:"log_max_size"`
	Keep    int   `json:"log_keep"`
}

// logSpec is what the log rotation keys of one mapping set.
type logSpec struct {
	maxSize *int64
	keep    *int
}

var sizeRe = regexp.MustCompile(`(?i)^\s*([0-9]+(?:\.[0-9]+)?)\s*(|b|k|kb|kib|m|mb|mib|g|gb|gib)\s*$`)

// ParseSize reads a size written like 200KB, 10MB, 1.5GB or a plain number
// of bytes; K, M and G are powers of 1024 (as df -h and pm2-logrotate).
func ParseSize(s string) (int64, error) {
	m := sizeRe.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	switch strings.ToLower(m[2])[:min(1, len(m[2]))] {
	case "k":
		f *= 1 << 10
	case "m":
		f *= 1 << 20
	case "g":
		f *= 1 << 30
	}
	if f > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(f), nil
}

// logKey reads log_max_size and log_keep into s; false for other keys.
func (l *loader) logKey(k, v *yaml.Node, s *logSpec, what string) bool {
	switch k.Value {
	case "log_max_size":
		n := resolve(v)
		if n.Kind != yaml.ScalarNode {
			l.errs.add(l.pos(n), "write a size such as 10MB, 200KB or 1GB (0: never rotate)", "%s must be a size, not %s", what, kindName(n))
			return true
		}
		size, err := ParseSize(n.Value)
		if err == nil && size > 0 && size < minLogMaxSize {
			err = fmt.Errorf("%s is less than 1KB", n.Value)
		}
		if err != nil {
			l.errs.add(l.pos(n), "write a size such as 10MB, 200KB or 1GB (0: never rotate)", "%s: %v", what, err)
			return true
		}
		s.maxSize = &size
	case "log_keep":
		n := resolve(v)
		var keep int
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&keep) != nil || keep < 1 || keep > MaxLogKeep {
			l.errs.add(l.pos(n), fmt.Sprintf("write a whole number from 1 to %d", MaxLogKeep), "%s must be how many rotated logs to keep", what)
			return true
		}
		s.keep = &keep
	default:
		return false
	}
	return true
}

// rotation applies s over def.
func (s logSpec) rotation(def LogRotation) LogRotation {
	r := def
	if s.maxSize != nil {
		r.MaxSize = *s.maxSize
	}
	if s.keep != nil {
		r.Keep = *s.keep
	}
	return r
}

func defaultLogRotation() LogRotation {
	return LogRotation{MaxSize: DefaultLogMaxSize, Keep: DefaultLogKeep}
}
