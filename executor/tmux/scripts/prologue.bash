# Sourced by the pane's interactive bash (`bash -ic '. PROLOGUE ENVFILE'`):
# ENVFILE (0600, written by launcher for this run only) exports the process's
# variables and its command, so no value ever sits on a command line or in
# the tmux session's environment. It is removed once read.
__launcher_env=$1; set --
if ! . "$__launcher_env"; then printf '[launcher] cannot read %s\n' "$__launcher_env"; exit 126; fi
rm -f -- "$__launcher_env"; unset __launcher_env
trap '__launcher_rc=$?; case $__launcher_rc in 130|131) printf "\n";; esac; printf "[launcher] %s exited with code %d (run %s)\n" "$LAUNCHER_PROCESS" "$__launcher_rc" "$LAUNCHER_TAG"' EXIT
printf '[launcher] starting %s (run %s)\n' "$LAUNCHER_PROCESS" "$LAUNCHER_TAG"
if [ -n "$LAUNCHER_CWD" ]; then cd -- "$LAUNCHER_CWD" || exit 126; fi
eval "${LAUNCHER_RUN:-$LAUNCHER_CMD}"
