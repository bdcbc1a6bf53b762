---@meta launcher
-- LuaLS type stubs for the `launcher` module (launcher lua-types writes
-- them for your editor). Functions marked @async wait: call them from a
-- script, an event handler, a check or a command, not while a module or a
-- plugin is loading. Waiting works inside pcall and coroutines; read
-- watchers with `while` loops (for-in iterators cannot wait).

---@alias launcher.EventName "starting"|"started"|"ready"|"failed"|"exited"|"stopping"|"stopped"|"output"|"host_lost"|"host_back"|"restarted"|"user"
---@alias launcher.State "STOPPED"|"STARTING"|"RUNNING"|"READY"|"STOPPING"|"DEAD"|"RESTARTING"|"CONFLICT"|"UNAVAILABLE"|"ORPHANED"

---@class launcher.Event
---@field event launcher.EventName
---@field name? string    user events: the name launcher.emit gave
---@field data? any       user events: the data launcher.emit gave
---@field process? string
---@field machine? string
---@field session? string
---@field time number     seconds since the epoch
---@field exit_code? integer
---@field message? string
---@field line? string    output events: the matching line
---@field pid? integer
---@field expected? boolean exited events: true when a stop asked for the exit
---@field restarts? integer restarted events: the restart count of the run
---@field key? string      exited and restarted events: the same in every launcher that watched it (de-duplicate alerts by it)

---@class launcher.Status
---@field process string
---@field session string
---@field machine string
---@field state launcher.State
---@field pid? integer
---@field exit_code? integer
---@field error? string
---@field restarts integer  restarts by the restart policy in this run
---@field last_restart? number  when the last one happened (seconds since the epoch)
---@field last_restart_exit_code? integer  the exit that caused it
---@field config_changed? boolean  the config now renders another command for this run: restart it with run_variants and run_params to apply it
---@field run_variants? string[]  the variants the run was started with
---@field run_params? table<string,string>  the params the run was started with

---@class launcher.Proc
---@field name string
---@field machine string
---@field session string
---@field docker string
---@field cmd string
---@field log string  the log file on its machine
---@field pid integer

---@class launcher.Subscription
local Subscription = {}
---Stop delivering events to this handler.
function Subscription:off() end

---@class launcher.Watch
local Watch = {}
---Next line of the log (filtered by match), waiting for it.
---@async
---@param opts? {timeout?: number}
---@return string|nil line
---@return string? err "timeout"|"closed"|"cancelled"
function Watch:next(opts) end
---Stop following.
function Watch:close() end

---@class launcher
---@field args string[] the arguments after the script's name
---@field config {session: string, file: string, params: table<string,string>, processes: table<string, {name: string, cmd: string, machine: string, session: string, docker: string, persistent: boolean, depends: string[], env: table<string,string>, cwd?: string, ready_check?: table, ready_timeout?: number, ready_period?: number, stop_timeout?: number, variants: {name: string, group: boolean, choices: string[]}[]}>} read-only; reads as a table to pairs, ipairs, #, next, unpack, table.concat and json.encode
---@field log {info: fun(fmt: string, ...), warn: fun(fmt: string, ...), error: fun(fmt: string, ...)}
local launcher = {}

---Start a process and its dependencies, as `launcher run`; returns when it is ready.
---A list of names starts them at once (independent ones concurrently).
---A one-shot that already succeeded in this script is not run again (homing
---happens once per bring-up); `rerun = true` runs it anyway. `deps = false`
---starts only the named processes (their dependencies must be up already).
---@async
---@param name string|string[]
---@param opts? {params?: table<string,string>, variants?: string[], timeout?: number, deps?: boolean, rerun?: boolean}
---@return true|nil ok
---@return string? err
function launcher.start(name, opts) end

---Stop a process (its dependants first), as `launcher kill`; `force` kills at once (SIGKILL).
---@async
---@param name string
---@param opts? {force?: boolean, timeout?: number}
---@return true|nil ok
---@return string? err
function launcher.kill(name, opts) end

---Stop every process of the config.
---@async
---@param opts? {force?: boolean, timeout?: number}
---@return true|nil ok
---@return string? err
function launcher.kill_all(opts) end

---Stop a process and start it again with the config's current command.
---@async
---@param name string
---@param opts? {params?: table<string,string>, variants?: string[], force?: boolean, timeout?: number}
---@return true|nil ok
---@return string? err
function launcher.restart(name, opts) end

---State of one process, or of every process (a list) without a name.
---@async
---@param name? string
---@return launcher.Status|launcher.Status[]|nil
---@return string? err
function launcher.status(name) end

---Wait until a process is READY.
---@async
---@param name string
---@param opts? {timeout?: number}
---@return true|nil ok
---@return string? err "timeout"|"exited"|"conflict"|"cancelled"
function launcher.wait_ready(name, opts) end

---Follow a process's log: the last `lines` lines, then new ones (only those matching `match`).
---@param name string
---@param opts? {lines?: integer, match?: string}
---@return launcher.Watch
function launcher.watch(name, opts) end

---Run a shell command where `target` runs: a process name (its machine, inside its container) or a machine string.
---@async
---@param target string
---@param cmd string
---@param opts? {timeout?: number}
---@return integer|nil code
---@return string stdout_or_err
---@return string? stderr
function launcher.exec(target, cmd, opts) end

---Call fn for each event; filter is a process name or glob, or {process=, match=, once=} (output events need
---match; once: only the first matching event). Each handler gets its events in order, one call at a time.
---@param event launcher.EventName
---@param filter string|{process?: string, match?: string, once?: boolean, name?: string}|fun(ev: launcher.Event)
---@param fn? fun(ev: launcher.Event)
---@return launcher.Subscription
function launcher.on(event, filter, fn) end

---Add a Lua readiness function for a process: ready when it returns true; `false, reason` shows why not.
---@param name string
---@param fn fun(proc: launcher.Proc): boolean, string?
function launcher.ready_check(name, fn) end

---Add a check kind for YAML: `ready_check: {check: KIND, option: value}`.
---@param kind string
---@param fn fun(proc: launcher.Proc, opts: table): boolean, string?
---@param opts? {options?: string[]|table<string, "string"|"number"|"integer"|"boolean">} the options it takes (with their types: a YAML value of another type is a file:line error)
function launcher.check(kind, fn, opts) end

---Add a subcommand: `launcher NAME ARGS…` runs fn(args); a number it returns is the exit code (nothing or 0:
---success; an error: 1).
---@param name string
---@param opts {help?: string, usage?: string}
---@param fn fun(args: string[]): integer?
function launcher.command(name, opts, fn) end

---@class launcher.Request
---@field method string
---@field path string
---@field query table<string, string>
---@field body? any  the decoded JSON body, if any

---Add an HTTP route to `launcher serve`: fn(request) returns a table, sent
---as JSON (or nil, then `null`). The path is fixed (no patterns) and may not
---start with /api/, /process/ or /static/. A Lua error answers 500 with the
---message. Waiting (launcher.exec, launcher.status…) works inside fn. A second
---value sets the status (100-599) and headers: `return body, {status = 201, headers = {Location = "/x/7"}}`.
---@param method "GET"|"POST"|"PUT"|"DELETE"
---@param path string
---@param fn fun(request: launcher.Request): table?, {status?: integer, headers?: table<string,string>}?
function launcher.route(method, path, fn) end

---Wait for a number of seconds.
---@async
---@param seconds number
---@return true|nil ok
---@return string? err "cancelled"
function launcher.sleep(seconds) end

---Keep the script running (handlers keep firing, exits are noticed) until Ctrl-C or the timeout.
---@async
---@param opts? {timeout?: number}
---@return true|nil ok true after the timeout
---@return string? err "cancelled"
function launcher.supervise(opts) end

---How long launcher waits at exit for event handlers still running or
---queued (default 5 s; the longest value any script or plugin set applies,
---at most 600). Past it, the handlers are stopped and launcher says which
---handler was busy and how many events of which kind were not delivered.
---@param seconds number
function launcher.set_drain_timeout(seconds) end

---Run fn once, `seconds` from now, as a task of its own (it may wait).
---@param seconds number
---@param fn fun()
---@return launcher.Timer
function launcher.after(seconds, fn) end

---Run fn every `seconds` (at least 0.01), as a task of its own (it may
---wait); the next run is due one interval after the previous one ended, so
---runs never overlap. A watchdog is a few lines:
---`launcher.every(1, function() ... end)`.
---@param seconds number
---@param fn fun()
---@return launcher.Timer
function launcher.every(seconds, fn) end

---@class launcher.Timer
---@field stop fun(self: launcher.Timer) stop it; a run under way finishes

---Run fn(...) as a task beside the caller: it may wait, and the caller goes
---on at once (so one slow job never holds up another). An error in it is
---reported with its traceback.
---@param fn function
---@param ... any
---@return launcher.Task
function launcher.spawn(fn, ...) end

---@class launcher.Task
---@field cancel fun(self: launcher.Task) end it (at its next wait, or at once if it loops without waiting)
---@field running fun(self: launcher.Task): boolean whether it still runs

---Publish a user event: handlers of "user" get it (`launcher.on("user", {name = "battery_*"}, fn)`, ev.name and
---ev.data), and so do serve's event stream and `--json` output. data is any JSON value.
---@param name string a letter, then letters, digits, _ . : - (at most 64)
---@param data? any
function launcher.emit(name, data) end

---A handler group: g:on(...) subscribes as launcher.on does; g:off() removes
---every handler of the group at once.
---@return launcher.Group
function launcher.group() end

---@class launcher.Group
---@field on fun(self: launcher.Group, event: launcher.EventName, filter: any, fn?: fun(ev: launcher.Event)): launcher.Subscription
---@field off fun(self: launcher.Group) remove every handler of the group

---Quote a string as one POSIX shell word.
---@param s string
---@return string
function launcher.shell_quote(s) end

---What the current run of a process wrote to its log (since it started).
---@async
---@param name string
---@return string|nil text
---@return string? err
function launcher.run_log(name) end

return launcher
