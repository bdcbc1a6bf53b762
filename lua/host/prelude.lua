-- Prelude of the launcher Lua host (runs once per runtime, before anything
-- else). It makes waiting safe in gopher-lua, which cannot suspend a
-- coroutine through pcall, require, metamethods or for-in iterators:
--
--  * every wait is a plain Lua call to __await, which yields (HOST, op) to
--    the host's scheduler; the scheduler resumes the task with the result;
--  * pcall and xpcall run their function in a coroutine and pass host
--    yields outward, so a wait inside pcall works;
--  * coroutine.resume/wrap pass host yields outward too, so a wait inside a
--    user's own coroutine works and the user's own yields keep working;
--  * require counts the modules being loaded: waiting while one loads is a
--    clear error instead of a crash.
local HOST = ...
local raw_create, raw_resume, raw_yield, raw_status = coroutine.create, coroutine.resume, coroutine.yield, coroutine.status
local raw_require = require
local unpack, select, error, type = unpack, select, error, type
local loading = 0

local function pack(...) return { n = select("#", ...), ... } end

-- __await(op) suspends the calling task until the host finishes op.
-- Shims call it as a tail call (`return __await(op, "name")`), so level 2
-- of an error is the user's code.
function __await(op, what)
  if loading > 0 then
    error((what or "this function") .. " waits, and cannot be called while a module is being loaded by require;"
      .. " call it from a function after loading", 2)
  end
  local res = raw_yield(HOST, op)
  return unpack(res, 1, res.n)
end

-- Resume co; host yields inside it are passed on to our own caller (the
-- scheduler), and the answer is passed back in.
local function drive(co, ...)
  local r = pack(raw_resume(co, ...))
  while r[1] and r[2] == HOST and raw_status(co) == "suspended" do
    local answer = raw_yield(HOST, r[3])
    r = pack(raw_resume(co, answer))
  end
  return r
end

function coroutine.resume(co, ...)
  local r = drive(co, ...)
  return unpack(r, 1, r.n)
end

function coroutine.wrap(f)
  local co = raw_create(f)
  return function(...)
    local r = drive(co, ...)
    -- As in Lua: the error as raised inside, without a position of ours.
    if not r[1] then error(r[2], 0) end
    return unpack(r, 2, r.n)
  end
end

-- pcall and xpcall that a wait can pass through. A user's own yield inside
-- them also reaches the enclosing coroutine, as in Lua 5.2.
local function protected(f, ...)
  -- A Lua body around f: a Go function (json.decode, string.rep) as the
  -- body of a gopher-lua coroutine returns nothing.
  local co = raw_create(function(...) return f(...) end)
  local r = pack(raw_resume(co, ...))
  while r[1] and raw_status(co) == "suspended" do
    r = pack(raw_resume(co, raw_yield(unpack(r, 2, r.n))))
  end
  return r
end

function pcall(f, ...)
  if type(f) ~= "function" and type(f) ~= "table" and type(f) ~= "userdata" then
    return false, "attempt to call a " .. type(f) .. " value"
  end
  local r = protected(f, ...)
  return unpack(r, 1, r.n)
end

function xpcall(f, handler, ...)
  local r = protected(f, ...)
  if r[1] then return unpack(r, 1, r.n) end
  return false, handler(r[2])
end

local where = __where
function require(name)
  local at = where()
  loading = loading + 1
  local ok, mod = raw_resume(raw_create(function() return raw_require(name) end))
  loading = loading - 1
  if not ok then
    -- The loader's own failure (not found) is raised here, in the prelude:
    -- it belongs to the require of the caller. An error inside the module
    -- keeps its position in the module.
    if type(mod) == "string" then
      local rest = mod:match("^%[launcher%]:%d+: (.*)$")
      if rest then error(at ~= "" and at .. " " .. rest or rest, 0) end
    end
    error(mod, 0)
  end
  return mod
end

-- Read-only views (launcher.config) keep their data in their metatable;
-- the functions that read a table raw read it there, and the ones that
-- write one refuse a view.
local rawget_, getmetatable_ = rawget, getmetatable
local function view_data(t)
  local mt = getmetatable_(t)
  if type(mt) == "table" then return rawget_(mt, "__launcher_data") end
end
local raw_next, raw_unpack, raw_concat = next, unpack, table.concat
_G.next = function(t, k) return raw_next(view_data(t) or t, k) end
_G.unpack = function(t, ...) return raw_unpack(view_data(t) or t, ...) end
if table.unpack then table.unpack = _G.unpack end
function table.concat(t, ...) return raw_concat(view_data(t) or t, ...) end
for _, name in ipairs({"insert", "remove", "sort"}) do
  local raw = table[name]
  table[name] = function(t, ...)
    if view_data(t) then error("launcher.config is read-only", 2) end
    return raw(t, ...)
  end
end

-- pairs and ipairs honour __pairs and __ipairs (Lua 5.2 style), so
-- read-only views such as launcher.config can be iterated.
local raw_pairs, raw_ipairs, getmetatable = pairs, ipairs, getmetatable
function pairs(t)
  local mt = getmetatable(t)
  if type(mt) == "table" and mt.__pairs then return mt.__pairs(t) end
  return raw_pairs(t)
end
function ipairs(t)
  local mt = getmetatable(t)
  if type(mt) == "table" and mt.__ipairs then return mt.__ipairs(t) end
  return raw_ipairs(t)
end
