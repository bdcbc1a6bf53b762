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
---Seconds elapsed since t.
---@param t number
---@return number
function time.since(t) end
return time
