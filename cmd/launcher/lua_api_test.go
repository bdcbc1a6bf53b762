package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/robotlauncher/launcher/executor/executortest"
)

// TestLuaAPIAgainstRealTmux runs every function and event of the launcher
// module against a real tmux server, asserting in Lua.
func TestLuaAPIAgainstRealTmux(t *testing.T) {
	t.Parallel()
	server, _ := filepath.Abs("../../examples/robot/bin/fake_roscore.pl")
	port := executortest.FreePort(t, "127.0.0.1")
	e := newEnv(t, fmt.Sprintf(`
context: {session: lapi, params: {port: %d}}
core:
  cmd: echo "core up"; while true; do echo tick; sleep 0.1; done
  ready_check: {check: log, match: "core up"}
web:
  cmd: perl %s {port}
  ready_check: {check: http, url: "http://127.0.0.1:{port}/health", status: 200}
tcpd:
  cmd: sleep 300
  depends: [web]
  ready_check: {check: tcp, port: "{port}"}
luachecked:
  cmd: echo "warming"; sleep 0.5; echo "warm"; sleep 300
child:
  cmd: sleep 300
  depends: [core]
dies:
  cmd: echo "dying now"; exit 5
  ready_check: "false"
`, port, server))
	script := filepath.Join(e.dir, "api.lua")
	os.WriteFile(script, []byte(`
local launcher = require("launcher")
local seen = {}
local function note(ev) seen[#seen + 1] = ev.event .. ":" .. (ev.process or "") end
for _, ev in ipairs({"starting", "started", "ready", "failed", "exited", "stopping", "stopped"}) do
  launcher.on(ev, note)
end
local lines = {}
launcher.on("output", {process = "core", match = "^tick$"}, function(ev) lines[#lines + 1] = ev.line end)

assert(launcher.args[1] == "first" and launcher.args[2] == "second")
assert(launcher.config.params.port == "`+strconv.Itoa(port)+`")
assert(launcher.shell_quote("it's") == [['it'\''s']])

-- A Lua ready check that waits for a log line.
launcher.ready_check("luachecked", function(proc)
  local text = launcher.run_log(proc.name)
  return text ~= nil and text:find("warm\n") ~= nil, "not warm yet"
end)

assert(launcher.start("child"))                       -- log check kind on core
assert(launcher.start("tcpd"))                        -- http check on web, tcp check on tcpd
assert(launcher.start("luachecked"))
assert(launcher.run_log("luachecked"):find("warm"))
local ok, err = launcher.start("dies")
assert(not ok and err:find("exited with code 5"), tostring(err))

local st = launcher.status("core")
assert(st.state == "READY" and st.machine == "local" and st.session == "lapi" and st.pid > 0)
assert(#launcher.status() == 6)
assert(launcher.wait_ready("core", {timeout = 5}))
local nok, nerr = launcher.wait_ready("dies", {timeout = 5})
assert(nok == nil and nerr == "exited", tostring(nerr))

local w = launcher.watch("core", {lines = 5, match = "tick"})
local l1 = assert(w:next({timeout = 5}))
assert(l1 == "tick", l1)
w:close()

local code, out, serr = launcher.exec("core", "echo $LAUNCHER_PROCESS; echo err >&2; exit 3")
assert(code == 3, code)
assert(out == "" or out:find(""), out)
local code2, out2 = launcher.exec("local", "printf %s hello")
assert(code2 == 0 and out2 == "hello", out2)

-- An exit nobody asked for reaches the handlers (the monitor).
local exited
launcher.on("exited", "child", function(ev) exited = ev end)
assert(launcher.exec("local", "kill -9 " .. launcher.status("child").pid) == 0)
local t0 = require("time").now()
while not exited and require("time").since(t0) < 5 do launcher.sleep(0.05) end
assert(exited and exited.exit_code == 137 and exited.expected == false, "no exited event")

assert(launcher.restart("core"))
assert(launcher.status("core").state == "READY")
assert(launcher.kill("tcpd"))
assert(launcher.status("tcpd").state == "STOPPED")
launcher.supervise({timeout = 0.5})
assert(#lines > 0, "no output events")
assert(launcher.kill_all())
launcher.sleep(0.3)

local all = table.concat(seen, " ")
for _, want in ipairs({"starting:core", "started:core", "ready:core", "failed:dies", "stopping:tcpd", "stopped:tcpd"}) do
  assert(all:find(want, 1, true), "missing event " .. want .. " in " .. all)
end
launcher.log.info("all good: %d events, %d output lines", #seen, #lines)
`), 0o644)
	r := e.run("script", script, "first", "second")
	if r.code != 0 || !strings.Contains(r.stderr, "all good") {
		t.Fatalf("script: %s", r)
	}
}

// TestLuaRemoteAndDocker: the same functions where the processes run on an
// SSH host and in containers; host_lost and host_back when the link drops.
func TestLuaRemoteAndDocker(t *testing.T) {
	t.Parallel()
	d := executortest.StartDockerd(t)
	w := newSSHWorld(t, []string{"127.0.0.2"}, executortest.SSHDOptions{Env: map[string]string{"DOCKER_HOST": d.Host()}})
	w.extra = append(w.extra, "DOCKER_HOST="+d.Host())
	h := w.hosts[0]
	d.Run(t, "lua-c")
	proxy, machine := w.proxied(h)
	server, _ := filepath.Abs("../../examples/robot/bin/fake_roscore.pl")
	port := executortest.FreePort(t, "127.0.0.1")
	w.writeConfig(fmt.Sprintf(`
context: {session: lrem}
remote_srv:
  machine: %[1]s
  cmd: perl %[2]s %[3]d
  ready_check: {check: tcp, port: %[3]d}
in_box:
  machine: %[1]s
  docker: lua-c
  cmd: echo "box up"; sleep 300
  ready_check: {check: log, match: "box up"}
local_box:
  docker: lua-c
  cmd: sleep 300
`, machine, server, port))
	marker := filepath.Join(w.dir, "supervising")
	script := filepath.Join(w.dir, "remote.lua")
	os.WriteFile(script, []byte(fmt.Sprintf(`
local launcher = require("launcher")
local fs = require("fs")
local lost, back
launcher.on("host_lost", function(ev) lost = ev fs.write(%[2]q .. ".lost", "yes") end)
launcher.on("host_back", function(ev) back = ev end)
assert(launcher.start("remote_srv"))
assert(launcher.start("in_box"))
assert(launcher.start("local_box"))
assert(launcher.status("remote_srv").machine == %[1]q)
local code, out = launcher.exec("in_box", "cat /etc/passwd")
assert(code == 0 and out:find("root:x:0:0"), out)
local code2, out2 = launcher.exec(%[1]q, "id -un")
assert(code2 == 0 and out2 == "launchertest\n", out2)
local code3, out3 = launcher.exec("local_box", "echo $LAUNCHER_TAG")
assert(code3 == 0, out3)
fs.write(%[2]q, "yes")
local t0 = require("time").now()
while not (lost and back) and require("time").since(t0) < 30 do launcher.sleep(0.1) end
assert(lost and lost.machine == %[1]q, "no host_lost")
assert(back and back.machine == %[1]q, "no host_back")
assert(launcher.kill_all())
launcher.log.info("remote good")
`, machine, marker)), 0o644)
	b := w.start("script", script)
	executortest.Eventually(t, "the script reaches its supervision", func() bool {
		_, err := os.Stat(marker)
		return err == nil
	})
	proxy.Stall()
	// The link stays down until the script's host_lost handler ran.
	executortest.Eventually(t, "host_lost reached the script", func() bool {
		_, err := os.Stat(marker + ".lost")
		return err == nil
	})
	proxy.Resume()
	proxy.Drop()
	if code := b.wait(t); code != 0 || !strings.Contains(b.stderr(), "remote good") {
		t.Fatalf("script: exit %d\n%s\n%s", code, b.stdout(), b.stderr())
	}
	if out, _ := d.Docker("exec", "lua-c", "ps"); strings.Contains(out, "sleep 300") {
		t.Errorf("kill_all did not reach into the container:\n%s", out)
	}
}
