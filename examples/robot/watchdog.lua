-- Watchdog: restart a process when its output has been silent for a while
-- (a hung driver that no longer prints its heartbeat).
--
--   launcher -c examples/robot/launcher.yaml script examples/robot/watchdog.lua controller 5
local launcher = require("launcher")
local time = require("time")

local name = launcher.args[1] or "controller"
local silence = tonumber(launcher.args[2] or "5")
-- Silence is measured on the monotonic clock: the wall clock jumps when NTP
-- sets it (a robot without a real-time clock boots in the past).
local last = time.monotonic()

-- Any line counts as a sign of life; so does becoming ready.
launcher.on("output", {process = name, match = "."}, function() last = time.monotonic() end)
launcher.on("ready", name, function() last = time.monotonic() end)

launcher.every(0.5, function()
  local st = launcher.status(name)
  if st.state ~= "READY" and st.state ~= "RUNNING" then return end
  local quiet = time.monotonic() - last
  if quiet >= silence then
    launcher.log.warn("%s silent for %.1fs: restarting it", name, quiet)
    last = time.monotonic()
    local ok, err = launcher.restart(name)
    if not ok then launcher.log.error("restart of %s failed: %s", name, err) end
  end
end)

launcher.log.info("watching %s: restart after %gs of silence", name, silence)
launcher.supervise()
