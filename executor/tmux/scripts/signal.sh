# Signals every process of a pane's session (the pane process is the session
# leader, so its sid is the pane pid) and everything below them that left
# the session (`script`, as concert_launcher's wrapper runs it, puts its
# command in a session of its own), plus any process of ours that carries
# the run's LAUNCHER_TAG (escaped with setsid). SKIP_PID (0: none) is spared.
# SID "-" signals by tag only (processes that outlived their pane).
# Arguments: SIGNAL SID SKIP_PID TAG
sig=$1 sid=$2 skip=$3 tag=$4
if [ "$sid" != - ]; then
  tree=" $sid " rest=""
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    read -r st < "$d/stat" 2>/dev/null || continue
    st=${st##*) }
    set -- $st
    if [ "$4" = "$sid" ]; then
      [ "$p" = "$skip" ] || kill -s "$sig" "$p" 2>/dev/null
      tree="$tree$p "
    else
      rest="$rest$p:$2 "
    fi
  done
  grew=1
  while [ $grew = 1 ]; do
    grew=0 left=""
    for e in $rest; do
      case $tree in
      *" ${e#*:} "*)
        p=${e%%:*}
        [ "$p" = "$skip" ] || kill -s "$sig" "$p" 2>/dev/null
        tree="$tree$p " grew=1 ;;
      *) left="$left$e " ;;
      esac
    done
    rest=$left
  done
fi
if [ -n "$tag" ]; then
  for f in $(grep -lzxF "LAUNCHER_TAG=$tag" /proc/[0-9]*/environ 2>/dev/null); do
    p=${f#/proc/}; p=${p%/environ}
    [ "$p" = "$skip" ] || kill -s "$sig" "$p" 2>/dev/null
  done
fi
exit 0
