---@meta json
local json = {}
---Encode a value as JSON (tables with keys 1..n are arrays).
---@param value any
---@param opts? {indent?: boolean}
---@return string|nil json
---@return string? err
function json.encode(value, opts) end
---Decode JSON (null becomes nil).
---@param text string
---@return any value
---@return string? err
function json.decode(text) end
---Mark a table as a list, so an empty one encodes as [] (an empty table is {} otherwise); returns it. A table
---with a metatable of its own is left as it is.
---@param t? table
---@return table
function json.array(t) end
return json
