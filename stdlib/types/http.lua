---@meta http
local http = {}
---@class http.Response
---@field status integer
---@field body string
---@field headers table<string,string>

---GET a URL (default timeout 10 s).
---@async
---@param url string
---@param opts? {headers?: table<string,string>, timeout?: number}
---@return http.Response|nil res
---@return string? err
function http.get(url, opts) end
---POST a body (a table is sent as JSON).
---@async
---@param url string
---@param body string|table
---@param opts? {headers?: table<string,string>, timeout?: number}
---@return http.Response|nil res
---@return string? err
function http.post(url, body, opts) end
return http
