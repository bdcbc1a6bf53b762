-- Robot bring-up in stages:  launcher script bringup.lua [SUPERVISE_SECONDS]
-- 1. roscore, ready when its port is open, its log says so, and /health answers;
-- 2. the controller (its readiness comes from the heartbeats check kind);
-- 3. homing, then the planner;
-- then it keeps supervising (alerts fire) until Ctrl-C or the given time.
local launcher = require("launcher")
local net = require("net")
local http = require("http")
local re = require("re")
local log = launcher.log

local port = tonumber(launcher.config.params.port)

-- Readiness of roscore, in Lua: three conditions, each with its reason.
launcher.ready_check("roscore", function(proc)
  local ok, err = net.tcp_open("127.0.0.1", port, 1)
  if not ok then return false, "port " .. port .. " closed: " .. tostring(err) end
  local text = launcher.run_log(proc.name) or ""
  if not re.match(text, "started core service") then return false, "no 'started core service' line yet" end
  local res, herr = http.get(("http://127.0.0.1:%d/health"):format(port), { timeout = 1 })
  if not res then return false, "health: " .. tostring(herr) end
  if res.status ~= 200 then return false, "health status " .. res.status end
  return true
end)

local function stage(name, fn)
  local t0 = require("time").monotonic()
  local ok, err = fn()
  if not ok then
    log.error("stage %s failed: %s", name, tostring(err))
    error("bring-up stopped at stage " .. name)
  end
  log.info("stage %s done in %.2fs", name, require("time").monotonic() - t0)
end

stage("core", function() return launcher.start("roscore", { timeout = 30 }) end)
stage("control", function() return launcher.start("controller", { timeout = 30 }) end)
stage("homing", function() return launcher.start("homing", { variants = { "all" }, timeout = 60 }) end)
stage("planning", function() return launcher.start("planner", { timeout = 30 }) end)

for _, st in ipairs(launcher.status()) do
  log.info("%-10s %s", st.process, st.state)
end

local seconds = tonumber(launcher.args[1])
log.info("supervising%s (Ctrl-C to stop watching; the processes keep running)",
  seconds and (" for " .. seconds .. "s") or "")
launcher.supervise({ timeout = seconds })
