-- Alerts: when a process exits without anyone asking it to, post a JSON
-- alert to the webhook in $ROBOT_ALERT_URL (and log it either way).
local launcher = require("launcher")
local http = require("http")
local url = os.getenv("ROBOT_ALERT_URL")

-- A stop of the whole robot can queue many alerts at once: give them time
-- to go out before launcher exits (it says what was not delivered).
launcher.set_drain_timeout(30)

launcher.on("exited", function(ev)
  if ev.expected then return end
  launcher.log.warn("%s exited unexpectedly (code %s) on %s", ev.process, tostring(ev.exit_code), ev.machine)
  if not url or url == "" then return end
  local res, err = http.post(url, {
    alert = "process exited",
    process = ev.process,
    machine = ev.machine,
    exit_code = ev.exit_code,
    time = ev.time,
    message = ev.message,
    robot = launcher.config.params.robot,
  }, { timeout = 5 })
  if not res then launcher.log.error("alert not sent: %s", tostring(err)) end
end)
