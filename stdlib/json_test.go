package stdlib

import "testing"

func TestJSON(t *testing.T) {
	got := runLua(t, `local json = require("json")
local s = json.encode({name = "roscore", ports = {11311, 11312}, ok = true, nested = {x = 1.5}})
local v = json.decode('{"a": [1, "two", null, {"b": false}], "c": "d"}')
local bad, err = json.decode("{nope")
return s, tostring(#v.a), v.a[2], tostring(v.a[4].b), v.c, tostring(bad), tostring(err ~= nil)`)
	want := []string{`{"name":"roscore","nested":{"x":1.5},"ok":true,"ports":[11311,11312]}`, "4", "two", "false", "d", "nil", "true"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("result %d: got %q want %q", i, got[i], want[i])
		}
	}
}

// Issue 13, bug 8: an empty list came back as {}: json.array marks a
// table as a list, so empty it is [] (and full, a list as before).
func TestJSONArray(t *testing.T) {
	got := runLua(t, `local json = require("json")
local empty = json.array()
local some = json.array({1, 2})
return json.encode({none = empty, plain = {}, some = some}), json.encode(json.array({}))`)
	if got[0] != `{"none":[],"plain":{},"some":[1,2]}` || got[1] != `[]` {
		t.Errorf("json.array: %q", got)
	}
}
