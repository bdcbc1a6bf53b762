# Sourced by the pane's interactive bash (`bash -ic '. PROLOGUE ENVFILE'`):
# ENVFILE (0600, written by launcher for this run only) exports the process's
# variables and its command, so no value ever sits on a command line or in
# the tmux session's environment. It is removed once read.
# A stop's C-c is sent only once the env file is gone (a C-c while bash
# still reads .bashrc is lost, and cuts the .bashrc short): from here on
# a C-c that comes before the command starts is remembered, and the
# command does not start.
trap '__launcher_int=1' INT
__launcher_env=$1; set --
if ! . "$__launcher_env"; then printf '[launcher] cannot read %s\n' "$__launcher_env"; exit 126; fi
# The content goes at once, with a builtin: an empty env file says this pane
# is past reading its .bashrc, as a removed one does. The file itself is
# removed by the pane's log writer when the start line below reaches it,
# so no process is forked here (a foreground `rm` held the terminal, and a
# C-c that came while it did was lost: TestKillRightAfterRunUsesSIGINT; a
# background one was 5 % of a bring-up's CPU).
: >"$__launcher_env"
unset __launcher_env
# The exit line is the pane's last output. tmux drops what it has not read
# from a pane whose process ended, so the pane waits (at most 2 s) until
# its log writer has read that line and says so with SIGUSR1: once the pane
# is dead, its log holds every byte. USR1 is caught (not ignored, which
# children would inherit) from the start, so a line that only looks like
# the end changes nothing. (No tmux call here: a watching launcher sees
# exits at its next poll.)
trap : USR1
__launcher_drain() {
  set +m
  [ -z "${__launcher_drained:-}" ] || return 0
  # One sleep, whose wait the USR1 cuts short. A USR1 that comes between
  # the test and the `wait` leaves the wait to its end: the writer sends it
  # again every 0.2 s until the pane is gone. (A loop of short sleeps was
  # one fork and exec each 50 ms: 3.3 per pane when 1000 stop together,
  # a quarter of the stop's CPU.) A C-c ends the wait too: the sleep is
  # still reaped, and the pane's exit code stays the command's.
  sleep 2 &
  [ -n "${__launcher_drained:-}" ] || wait $! 2>/dev/null
  # The USR1 that ends the wait leaves its sleep running, with this run's
  # variables: reaped before the pane ends, or a status right after the
  # exit would count it as a leftover of the run (ORPHANED; CI run 39).
  # Killed only then (it still runs): a sleep the wait reaped may have
  # given its pid to another process.
  [ -n "${__launcher_drained:-}" ] && kill $! 2>/dev/null && wait $! 2>/dev/null
  return 0
}
# A C-c that kills a command of a loop or a list (`while :; do …; done`,
# `a; b`, a restart policy's loop) makes this interactive bash abandon
# the whole -c command, and bash -c then ends with 1 (a plain `sleep`
# gives 130): the status of the job the C-c killed is still in PIPESTATUS,
# and is the exit code (a stop showed "exit code 1", an operator's C-c in
# the pane made the process DEAD). A command whose last word is `exit 1`
# right after a program that exited 130 reads as 130 too.
trap '__launcher_rc=$? __launcher_ps=${PIPESTATUS[*]}; [ "$__launcher_rc:$__launcher_ps" = 1:130 ] && __launcher_rc=130; trap "__launcher_drained=1" USR1 INT; case $__launcher_rc in 130|131) printf "\n";; esac; printf "[launcher] %s exited with code %d (run %s)\n" "$LAUNCHER_PROCESS" "$__launcher_rc" "$LAUNCHER_TAG" 2>/dev/null && __launcher_drain; exit "$__launcher_rc"' EXIT
printf '[launcher] starting %s (run %s)\n' "$LAUNCHER_PROCESS" "$LAUNCHER_TAG"
if [ -n "$LAUNCHER_CWD" ]; then cd -- "$LAUNCHER_CWD" || exit 126; fi
# From here on a C-c that reaches this shell ends the run (exit 130): one
# remembered but looked at no more, or caught by bash just before it
# execs or forks the command, would be lost (the process kept running and
# the stop escalated to SIGTERM). The trap stays through the command: an
# `exec` resets it in the new program, a child gets SIGINT itself.
trap 'exit 130' INT
[ -z "${__launcher_int:-}" ] || exit 130
if [ -z "${LAUNCHER_RESTART:-}" ]; then
  unset LAUNCHER_RESTART
  # A command that sets traps runs in a subshell (one more process for
  # the run's lifetime, so only then): its `trap … EXIT` would replace
  # this shell's, and the run would end without its exit line and without
  # waiting for its log to have every byte. In a container the traps are
  # the container's bash's.
  # The loop of one turn is for bash: with SIGINT trapped, a C-c that
  # kills a command of a list (`sleep 5; roslaunch …`) ends the run only
  # inside a loop; elsewhere bash went on with the next command (a stop
  # during the sleep let roslaunch start, and escalated to SIGTERM). A
  # `break` at the top of the command ends it.
  for __launcher_once in 1; do
    if [ -z "${LAUNCHER_RUN:-}" ] && [[ $LAUNCHER_CMD == *trap* ]]; then
      (eval "$LAUNCHER_CMD")
    else
      eval "${LAUNCHER_RUN:-$LAUNCHER_CMD}"
    fi
  done
else
  trap - INT
  # The restart policy lives here, beside the process, so it keeps working
  # when no launcher runs. LAUNCHER_RESTART: MODE DELAY_MS MAXDELAY_MS MAX
  # WINDOW_MS CLEAR_READY. What it does is recorded in window options
  # launcher reads: @launcher_restarts "COUNT LAST_EXIT UNIX_MS" and
  # @launcher_restart_state "backoff UNTIL_MS EXIT" or "gaveup WHY".
  read -r __lr_mode __lr_delay __lr_cap __lr_max __lr_window __lr_clear <<<"$LAUNCHER_RESTART"
  unset LAUNCHER_RESTART
  # Two clocks. The window counts on the kernel's monotonic one
  # (/proc/uptime, __lr_t): a robot's wall clock steps when NTP or GPS sets
  # it, and one set back would keep old restarts inside the window until
  # it caught up (the process given up on). What launcher reads is
  # wall-clock time (UNIX ms, __lr_wall).
  __lr_now() {
    local t=${EPOCHREALTIME:-} up
    t=${t/[.,]/}
    if [ -n "$t" ]; then __lr_wall=$((10#$t / 1000)); else __lr_wall=$(($(date +%s) * 1000)); fi
    __lr_t=$__lr_wall
    { read -r up _ </proc/uptime; } 2>/dev/null || return 0
    [[ $up =~ ^([0-9]+)\.([0-9]{2})$ ]] && __lr_t=$((10#${BASH_REMATCH[1]} * 1000 + 10#${BASH_REMATCH[2]} * 10))
    return 0
  }
  # A stop launcher asked for marks the window "stopping" in the same tmux
  # command that signals the process: it ends the loop. Not knowing (tmux
  # did not answer) counts as a stop: a restart must never race a kill.
  __lr_stop_asked() {
    local op
    op=$(tmux show-options -wqv -t "$TMUX_PANE" @launcher_op 2>/dev/null) || return 0
    case $op in stopping*) return 0 ;; esac
    return 1
  }
  # decide:begin
  # __lr_decide is the restart decision, a function of $__lr_mode,
  # $__launcher_rc, $__lr_t (now, ms, monotonic), the restart times $__lr_times and
  # the policy's numbers only (no tmux, no clock: TestRestartDecision runs
  # it as a table). It sets __lr_verdict (exit: a clean end under
  # on-failure; giveup: max_restarts reached within the window; restart)
  # and __lr_d, the delay (ms), doubled for each restart still in the window
  # up to the cap; __lr_times keeps the restarts inside the window.
  __lr_decide() {
    if [ "$__lr_mode" = on-failure ]; then
      case $__launcher_rc in 0 | 130 | 143) __lr_verdict=exit; return ;; esac
    fi
    local x recent=()
    for x in "${__lr_times[@]}"; do
      [ $((__lr_t - x)) -lt "$__lr_window" ] && recent+=("$x")
    done
    __lr_times=("${recent[@]}")
    if [ "$__lr_max" -gt 0 ] && [ "${#__lr_times[@]}" -ge "$__lr_max" ]; then
      __lr_verdict=giveup; return
    fi
    __lr_d=$__lr_delay
    for x in "${__lr_times[@]}"; do
      __lr_d=$((__lr_d * 2))
      [ "$__lr_d" -ge "$__lr_cap" ] && break
    done
    [ "$__lr_d" -gt "$__lr_cap" ] && __lr_d=$__lr_cap
    __lr_verdict=restart
  }
  # decide:end
  __lr_count=0 __lr_times=()
  while :; do
    # A subshell: the command's own `exit` must end it, not the loop.
    (eval "${LAUNCHER_RUN:-$LAUNCHER_CMD}")
    __launcher_rc=$?
    __lr_now
    __lr_decide
    [ "$__lr_verdict" = exit ] && exit "$__launcher_rc"
    __lr_stop_asked && exit "$__launcher_rc"
    if [ "$__lr_verdict" = giveup ]; then
      # The window in seconds, with its milliseconds when it has some (500ms said "0s").
      __lr_ws=$((__lr_window / 1000))
      [ $((__lr_window % 1000)) -eq 0 ] || printf -v __lr_ws '%d.%03d' "$__lr_ws" $((__lr_window % 1000))
      __lr_why="gave up after $__lr_count restarts (max_restarts $__lr_max within ${__lr_ws}s); last exit code $__launcher_rc"
      tmux set-option -w -t "$TMUX_PANE" @launcher_restart_state "gaveup $__lr_why" \; wait-for -S launcher-changed 2>/dev/null
      printf '[launcher] %s: %s (run %s)\n' "$LAUNCHER_PROCESS" "$__lr_why" "$LAUNCHER_TAG"
      exit "$__launcher_rc"
    fi
    if [ "$__lr_clear" = 1 ]; then
      tmux set-option -w -t "$TMUX_PANE" @launcher_restart_state "backoff $((__lr_wall + __lr_d)) $__launcher_rc" \; set-option -w -t "$TMUX_PANE" @launcher_ready 0 \; wait-for -S launcher-changed 2>/dev/null
    else
      tmux set-option -w -t "$TMUX_PANE" @launcher_restart_state "backoff $((__lr_wall + __lr_d)) $__launcher_rc" \; wait-for -S launcher-changed 2>/dev/null
    fi
    printf '[launcher] %s failed with code %d; restarting in %d.%03ds (run %s)\n' "$LAUNCHER_PROCESS" "$__launcher_rc" $((__lr_d / 1000)) $((__lr_d % 1000)) "$LAUNCHER_TAG"
    sleep "$((__lr_d / 1000)).$(printf %03d $((__lr_d % 1000)))"
    __lr_stop_asked && exit "$__launcher_rc"
    __lr_now
    __lr_count=$((__lr_count + 1)) __lr_times+=("$__lr_t")
    tmux set-option -w -t "$TMUX_PANE" @launcher_restarts "$__lr_count $__launcher_rc $__lr_wall" \; set-option -w -u -t "$TMUX_PANE" @launcher_restart_state \; wait-for -S launcher-changed 2>/dev/null
    printf '[launcher] restarting %s (restart %d, run %s)\n' "$LAUNCHER_PROCESS" "$__lr_count" "$LAUNCHER_TAG"
  done
fi
