---@meta log
local log = {}
---@param fmt string
---@param ... any
function log.info(fmt, ...) end
---@param fmt string
---@param ... any
function log.warn(fmt, ...) end
---@param fmt string
---@param ... any
function log.error(fmt, ...) end
return log
