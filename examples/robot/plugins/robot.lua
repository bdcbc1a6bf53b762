-- Robot-specific additions: a check kind and a command.
local launcher = require("launcher")
local re = require("re")

-- ready_check: {check: heartbeats, count: N}: ready once this run of the
-- process printed N "heartbeat" lines.
launcher.check("heartbeats", function(proc, opts)
  local want = tonumber(opts.count) or 1
  local text, err = launcher.run_log(proc.name)
  if not text then return false, tostring(err) end
  local n = select(2, text:gsub("heartbeat %d+", ""))
  if n >= want then return true end
  return false, ("%d of %d heartbeats"):format(n, want)
end, { options = { "count" } })

-- launcher calibrate [AXIS]: home one axis (all by default) and report.
launcher.command("calibrate", { help = "home the robot (one axis, or all)", usage = "[all|z]" }, function(args)
  local axis = args[1] or "all"
  local ok, err = launcher.start("homing", { variants = { axis }, timeout = 60 })
  if not ok then error("calibration failed: " .. tostring(err)) end
  local text = launcher.run_log("homing") or ""
  launcher.log.info("calibrated axis %s: %s", axis, re.match(text, "homed") and "homed" or "?")
end)
