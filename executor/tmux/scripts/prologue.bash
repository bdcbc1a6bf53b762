trap '__launcher_rc=$?; case $__launcher_rc in 130|131) printf "\n";; esac; printf "[launcher] %s exited with code %d (run %s)\n" "$LAUNCHER_PROCESS" "$__launcher_rc" "$LAUNCHER_TAG"' EXIT
printf '[launcher] starting %s (run %s)\n' "$LAUNCHER_PROCESS" "$LAUNCHER_TAG"
if [ -n "$LAUNCHER_CWD" ]; then cd -- "$LAUNCHER_CWD" || exit 126; fi
eval "${LAUNCHER_RUN:-$LAUNCHER_CMD}"
