package stdlib

import (
	"regexp"
	"sync"

	lua "github.com/yuin/gopher-lua"

	"github.com/robotlauncher/launcher/lua/host"
)

var (
	reMu    sync.Mutex
	reCache = map[string]*regexp.Regexp{}
)

func compile(L *lua.LState, pattern string) *regexp.Regexp {
	reMu.Lock()
	defer reMu.Unlock()
	if re, ok := reCache[pattern]; ok {
		return re
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		host.Raise(L, "bad regular expression %q: %v", pattern, err)
	}
	if len(reCache) < 1024 {
		reCache[pattern] = re
	}
	return re
}

// re (Go regular expressions, RE2 syntax): match(s, pattern) -> bool;
// find(s, pattern) -> the match and its groups, or nil; gsub(s, pattern,
// replacement) -> the string with every match replaced ($1 for groups).
func reLoader(L *lua.LState) int {
	m := L.NewTable()
	L.SetFuncs(m, map[string]lua.LGFunction{
		"match": func(L *lua.LState) int {
			L.Push(lua.LBool(compile(L, host.Str(L, 2)).MatchString(host.Str(L, 1))))
			return 1
		},
		"find": func(L *lua.LState) int {
			sub := compile(L, host.Str(L, 2)).FindStringSubmatch(host.Str(L, 1))
			if sub == nil {
				L.Push(lua.LNil)
				return 1
			}
			for _, s := range sub {
				L.Push(lua.LString(s))
			}
			return len(sub)
		},
		"gsub": func(L *lua.LState) int {
			L.Push(lua.LString(compile(L, host.Str(L, 2)).ReplaceAllString(host.Str(L, 1), host.Str(L, 3))))
			return 1
		},
	})
	L.Push(m)
	return 1
}
