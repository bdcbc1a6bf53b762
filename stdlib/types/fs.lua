---@meta fs
local fs = {}
---@param path string
---@return string|nil data
---@return string? err
function fs.read(path) end
---@param path string
---@param data string
---@return true|nil ok
---@return string? err
function fs.write(path, data) end
---@param path string
---@return boolean
function fs.exists(path) end
---@param pattern string
---@return string[]|nil paths
---@return string? err
function fs.glob(pattern) end
return fs
