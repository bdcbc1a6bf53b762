# Pane wrapper: runs one process in a tmux pane and frames its log.
# Arguments: NAME TAG CWD then the command to run (argv).
# The keys C-c and C-\ are meant for the process; a handler (not SIG_IGN,
# which children would inherit) keeps this wrapper alive to report the exit.
name=$1 tag=$2 cwd=$3
shift 3
trap : INT QUIT
stty -echoctl 2>/dev/null
if [ -n "$cwd" ]; then
  cd -- "$cwd" || { printf '[launcher] %s: cannot enter directory %s\n' "$name" "$cwd"; exit 126; }
fi
printf '[launcher] starting %s (run %s)\n' "$name" "$tag"
"$@"
rc=$?
printf '[launcher] %s exited with code %d (run %s)\n' "$name" "$rc" "$tag"
exit "$rc"
