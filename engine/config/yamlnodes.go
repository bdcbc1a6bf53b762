package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// resolve follows aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

type pair struct{ k, v *yaml.Node }

// pairs returns the entries of a mapping with YAML merge keys (<<) applied:
// explicit keys win over merged ones, earlier merges over later ones.
func (l *loader) pairs(n *yaml.Node) []pair {
	p, _ := l.pairsDepth(n, 0)
	return p
}

// mergedMap is a mapping's entries with merges applied, and its weight:
// how many entries the merges would produce if each were expanded anew,
// which is what an alias bomb makes explode.
type mergedMap struct {
	pairs  []pair
	weight int
}

// pairsDepth computes a mapping's entries once per node: an anchor merged
// many times (nine times per level over eight levels) is worked out once,
// while its weight still counts every expansion against maxMergeVisits.
func (l *loader) pairsDepth(n *yaml.Node, depth int) ([]pair, int) {
	if l.exploded {
		return nil, 0
	}
	n = resolve(n)
	if m, ok := l.merged[n]; ok {
		return m.pairs, m.weight
	}
	out, weight := l.computePairs(n, depth)
	if l.merged == nil {
		l.merged = map[*yaml.Node]mergedMap{}
	}
	l.merged[n] = mergedMap{out, weight}
	return out, weight
}

func (l *loader) computePairs(n *yaml.Node, depth int) ([]pair, int) {
	weight := 0
	if depth > 32 {
		l.errs.add(l.pos(n), "", "merge keys nest too deeply")
		return nil, 0
	}
	var own []pair
	var merged []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == "<<" && k.Tag == "!!merge" {
			src := resolve(v)
			var sources []*yaml.Node
			switch src.Kind {
			case yaml.MappingNode:
				sources = []*yaml.Node{src}
			case yaml.SequenceNode:
				for _, s := range src.Content {
					sources = append(sources, resolve(s))
				}
			default:
				l.errs.add(l.pos(v), "", "a merge key (<<) needs a mapping or a list of mappings")
			}
			for _, s := range sources {
				if s.Kind != yaml.MappingNode {
					l.errs.add(l.pos(v), "", "a merge key (<<) needs a mapping or a list of mappings")
					continue
				}
				sub, w := l.pairsDepth(s, depth+1)
				weight += w
				if l.visits += w; l.visits > maxMergeVisits {
					if !l.exploded {
						l.exploded = true
						l.errs.add(l.pos(v), "use fewer nested merge keys (<<) and aliases",
							"merge keys expand to more than %d entries (a YAML alias bomb?)", maxMergeVisits)
					}
					return nil, 0
				}
				merged = append(merged, sub...)
			}
			continue
		}
		own = append(own, pair{k, v})
	}
	seen := map[string]bool{}
	var out []pair
	for _, p := range own {
		key := p.k.Value
		if seen[key] {
			l.errs.add(l.pos(p.k), "remove one of them", "key %q is defined twice", key)
			continue
		}
		seen[key] = true
		out = append(out, p)
	}
	for _, p := range merged {
		if !seen[p.k.Value] {
			seen[p.k.Value] = true
			out = append(out, p)
		}
	}
	return out, weight + len(own)
}

func kindName(n *yaml.Node) string {
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "null"
		case "!!bool":
			return "a boolean"
		case "!!int", "!!float":
			return "a number"
		}
		return fmt.Sprintf("the string %q", n.Value)
	}
	return "something else"
}

func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// str reads a scalar as text (numbers keep their written form).
func (l *loader) str(n *yaml.Node, what string) (string, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		l.errs.add(l.pos(n), "", "%s must be a string, not %s", what, kindName(n))
		return "", false
	}
	return n.Value, true
}

// boolean accepts YAML booleans, including the YAML 1.1 spellings PyYAML
// reads as booleans (yes/no/on/off), so concert_launcher configs load
// unchanged; a quoted "false" is a string and an error.
func (l *loader) boolean(n *yaml.Node, what string) (bool, bool) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) == 0 {
		switch strings.ToLower(n.Value) {
		case "true", "yes", "on":
			return true, true
		case "false", "no", "off":
			return false, true
		}
	}
	l.errs.add(l.pos(n), "write true or false, without quotes", "%s must be a boolean, not %s", what, kindName(n))
	return false, false
}

func (l *loader) duration(n *yaml.Node, what string) (time.Duration, bool) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && (n.Tag == "!!int" || n.Tag == "!!float") {
		f, err := strconv.ParseFloat(n.Value, 64)
		if err == nil && f >= 0 {
			return time.Duration(f * float64(time.Second)), true
		}
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		d, err := time.ParseDuration(n.Value)
		if err == nil && d >= 0 {
			return d, true
		}
	}
	l.errs.add(l.pos(n), "use a duration such as 30s, 500ms or 2m", "%s is not a valid duration: %s", what, kindName(n))
	return 0, false
}

func (l *loader) envMap(n *yaml.Node, what string) []EnvVar {
	var out []EnvVar
	for _, p := range l.namedScalars(n, what, envNameRe, "NAME: value", "use letters, digits and _ and do not start with a digit", "variable") {
		out = append(out, EnvVar{Name: p.Name, Value: p.Value})
	}
	return out
}

// namedScalars reads a mapping of name: scalar (env, params): names must
// match nameRe, values are text as written.
func (l *loader) namedScalars(n *yaml.Node, what string, nameRe *regexp.Regexp, form, nameHint, noun string) []Param {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		l.errs.add(l.pos(n), "write "+form+" pairs", "%s must be a mapping, not %s", what, kindName(n))
		return nil
	}
	var out []Param
	for _, p := range l.pairs(n) {
		if !nameRe.MatchString(p.k.Value) {
			l.errs.add(l.pos(p.k), nameHint, "%s: %q is not a valid %s name", what, p.k.Value, noun)
			continue
		}
		if v, ok := l.scalarText(p.v, what+"."+p.k.Value); ok {
			out = append(out, Param{Name: p.k.Value, Value: v, Pos: l.pos(p.v)})
		}
	}
	return out
}

// scalarText reads a param-like value: any scalar, as written; null is "".
func (l *loader) scalarText(n *yaml.Node, what string) (string, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode {
		l.errs.add(l.pos(n), "quote it if it is meant as text", "%s must be a single value, not %s", what, kindName(n))
		return "", false
	}
	if n.Tag == "!!null" {
		return "", true
	}
	return n.Value, true
}

func (l *loader) params(n *yaml.Node, what string) []Param {
	return l.namedScalars(n, what, paramNameRe, "name: value", "use letters, digits and _", "parameter")
}

func (l *loader) unknownKey(k *yaml.Node, known []string, where string) {
	if knownForeignKeys[k.Value] {
		return
	}
	if s := suggest(k.Value, known); s != "" {
		l.errs.add(l.pos(k), fmt.Sprintf("did you mean %q?", s), "%s: unknown key %q", where, k.Value)
	}
	// Other unknown keys belong to other tools and are ignored.
}

// plain converts a node to a Go value for Extra and check options.
func plain(n *yaml.Node) any {
	n = resolve(n)
	var v any
	if err := n.Decode(&v); err != nil {
		return n.Value
	}
	return v
}
