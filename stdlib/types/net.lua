---@meta net
local net = {}
---Whether a TCP connection to host:port can be opened.
---@async
---@param host string
---@param port integer
---@param timeout? number seconds (default 2)
---@return true|nil ok
---@return string? err
function net.tcp_open(host, port, timeout) end
return net
