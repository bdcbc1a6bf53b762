-- Built-in ready-check kinds, usable in YAML as
--   ready_check: {check: tcp, port: 11311}
--   ready_check: {check: http, url: "http://localhost:8080/health", status: 200}
--   ready_check: {check: log, match: "started core service"}
-- Each runs where the process runs when that matters: on its machine, and
-- inside its container when it has one.
local launcher = require("launcher")
local net = require("net")
local http = require("http")
local re = require("re")

local q = launcher.shell_quote

-- A process that runs on this computer, outside any container, can be
-- checked from here; others are checked on their machine.
local function here(proc)
  return proc.machine == "local" and (proc.docker == nil or proc.docker == "")
end

launcher.check("tcp", function(proc, o)
  local host, port = o.host or "localhost", tonumber(o.port)
  if not port then return false, "the tcp check needs a port" end
  if here(proc) then
    local ok, err = net.tcp_open(host, port, 2)
    if ok then return true end
    return false, ("port %s:%d is not open (%s)"):format(host, port, tostring(err))
  end
  local code, out, err = launcher.exec(proc.name, "exec 3<>/dev/tcp/" .. q(host) .. "/" .. port, { timeout = 3 })
  if code == nil then return false, tostring(out) end
  if code == 0 then return true end
  return false, ("port %s:%d is not open on %s (%s)"):format(host, port, proc.machine, err ~= "" and err or "exit " .. code)
end, { options = { "port", "host" } })

launcher.check("http", function(proc, o)
  if not o.url then return false, "the http check needs a url" end
  local want = tonumber(o.status) or 200
  if here(proc) then
    local res, err = http.get(o.url, { timeout = 3 })
    if not res then return false, "GET " .. o.url .. ": " .. tostring(err) end
    if res.status == want then return true end
    return false, ("GET %s: status %d, want %d"):format(o.url, res.status, want)
  end
  local code, out, err = launcher.exec(proc.name,
    "curl -s -o /dev/null -w '%{http_code}' --max-time 3 " .. q(o.url), { timeout = 5 })
  if code == nil then return false, tostring(out) end
  if code ~= 0 and (out == nil or out == "") then
    return false, ("GET %s on %s failed (curl exit %d) %s"):format(o.url, proc.machine, code, err or "")
  end
  if tonumber(out) == want then return true end
  return false, ("GET %s on %s: status %s, want %d"):format(o.url, proc.machine, tostring(out), want)
end, { options = { "url", "status" } })

launcher.check("log", function(proc, o)
  if not o.match then return false, "the log check needs a match (a regular expression)" end
  local text, err = launcher.run_log(proc.name)
  if not text then return false, tostring(err) end
  if re.match(text, "(?m)" .. o.match) then return true end
  return false, ("no line matches %q yet"):format(o.match)
end, { options = { "match" } })
