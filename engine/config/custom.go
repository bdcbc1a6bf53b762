package config

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Custom is a process a GUI adds at run time (the reference GUI's "custom
// process"): not in the file, checked as the same entry in it would be.
type Custom struct {
	Name    string `json:"name"`
	Machine string `json:"machine"`
	Session string `json:"session"`
	Docker  string `json:"docker"`
	Cmd     string `json:"cmd"`
}

// WithCustom returns a copy of c with cu added as a persistent process
// (marked _is_custom, Custom set). Its machine must be one the config
// already uses (or local): a custom process never makes launcher dial a
// host the robot's config does not name.
func (c *Config) WithCustom(cu Custom) (*Config, error) {
	if c.byName[cu.Name] != nil {
		return nil, fmt.Errorf("a process named %q exists: choose another name", cu.Name)
	}
	if cu.Machine == "" {
		cu.Machine = "local"
	}
	if !IsLocal(cu.Machine) && !slices.ContainsFunc(c.Processes, func(p *Process) bool { return p.Machine == cu.Machine }) {
		return nil, fmt.Errorf("machine %q: no process of the config runs there (use one of its machines, or local)", cu.Machine)
	}
	str := func(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }
	entry := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{str("cmd"), str(cu.Cmd), str("machine"), str(cu.Machine)}}
	if cu.Session != "" {
		entry.Content = append(entry.Content, str("session"), str(cu.Session))
	}
	if cu.Docker != "" {
		entry.Content = append(entry.Content, str("docker"), str(cu.Docker))
	}
	l := &loader{file: "custom process"}
	p := l.process(str(cu.Name), entry, c)
	if len(l.errs) > 0 || p == nil {
		var msgs []string
		for _, e := range l.errs {
			m := e.Msg
			if e.Hint != "" {
				m += " (" + e.Hint + ")"
			}
			msgs = append(msgs, m)
		}
		return nil, errors.New(strings.Join(msgs, "; "))
	}
	p.Custom = true
	p.Extra["_is_custom"] = true
	n := *c
	n.Processes = append(slices.Clip(c.Processes), p)
	n.byName = maps.Clone(c.byName)
	n.byName[p.Name] = p
	return &n, nil
}

// WithoutCustom returns a copy of c without the custom process name.
func (c *Config) WithoutCustom(name string) (*Config, error) {
	p := c.byName[name]
	if p == nil {
		return nil, &UnknownProcessError{Name: name}
	}
	if !p.Custom {
		return nil, fmt.Errorf("%q is a process of %s, not a custom one: only custom processes are removed", name, c.File)
	}
	n := *c
	n.Processes = slices.DeleteFunc(slices.Clone(c.Processes), func(q *Process) bool { return q == p })
	n.byName = maps.Clone(c.byName)
	delete(n.byName, name)
	return &n, nil
}
