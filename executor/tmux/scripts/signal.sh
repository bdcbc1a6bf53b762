# Signals every process of a pane's session (the pane process is the session
# leader, so its sid is the pane pid), plus any process of ours that carries
# the run's LAUNCHER_TAG (escaped with setsid). SKIP_PID (0: none) is spared.
# SID "-" signals by tag only (processes that outlived their pane).
# Arguments: SIGNAL SID SKIP_PID TAG
sig=$1 sid=$2 skip=$3 tag=$4
[ "$sid" = - ] || for d in /proc/[0-9]*; do
  p=${d#/proc/}
  [ "$p" = "$skip" ] && continue
  read -r st < "$d/stat" 2>/dev/null || continue
  st=${st##*) }
  set -- $st
  [ "$4" = "$sid" ] && kill -s "$sig" "$p" 2>/dev/null
done
if [ -n "$tag" ]; then
  for f in $(grep -lzxF "LAUNCHER_TAG=$tag" /proc/[0-9]*/environ 2>/dev/null); do
    p=${f#/proc/}; p=${p%/environ}
    [ "$p" = "$skip" ] || kill -s "$sig" "$p" 2>/dev/null
  done
fi
exit 0
