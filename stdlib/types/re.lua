---@meta re
local re = {}
---Whether s matches the Go regular expression.
---@param s string
---@param pattern string
---@return boolean
function re.match(s, pattern) end
---The first match and its groups, or nil.
---@param s string
---@param pattern string
---@return string? match
---@return string? ... groups
function re.find(s, pattern) end
---Replace every match ($1 refers to a group).
---@param s string
---@param pattern string
---@param replacement string
---@return string
function re.gsub(s, pattern, replacement) end
return re
