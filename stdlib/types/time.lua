---@meta time
local time = {}
---Seconds since the epoch, with fractions.
---@return number
function time.now() end
---Format a time (seconds) with a Go layout (default RFC 3339 with milliseconds).
---@param t number
---@param layout? string
---@return string
function time.format(t, layout) end
---Seconds elapsed since t (a time from now(); the wall clock: it jumps when NTP or GPS sets the time).
---@param t number
---@return number
function time.since(t) end
---Seconds on a clock that only moves forward (from an arbitrary start): for durations, timeouts and watchdogs.
---@return number
function time.monotonic() end
return time
