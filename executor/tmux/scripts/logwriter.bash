# Log writer for machines without Perl's Time::HiRes: same output as
# logwriter.pl, slower. bash's extglob replacement is worse than quadratic
# in the length it scans, so escape sequences are removed piece by piece:
# the line is split at ESC and each piece's head (at most 64 bytes) is
# matched with an anchored regex, in pieces of at most 64 KiB cut before an
# ESC. Control characters go with tr in long lines (each bash replacement
# copies the line). The cost is linear in the line's length.
# Arguments, the end of a run, the writer's own end, a removed log,
# rotation and the env file: as logwriter.pl. The size is counted here
# (bytes written) and checked with wc only when the count says it is time,
# so the writer forks nothing per line.
tag=${1:-} pane=${2:-0} log=${3:-} max=${4:-0} keep=${5:-0} envf=${6:-} checked=$SECONDS
[[ $pane =~ ^[1-9][0-9]*$ ]] || pane=0
# started sets REPLY to the start time of process $1 (field 22 of
# /proc/PID/stat, after the command's name), empty when it cannot be read
# (no temporary file, no fork). PANE is the pane while it has the start
# time it had here (see logwriter.pl).
started() {
  REPLY=
  local s i
  { read -r s < "/proc/$1/stat"; } 2>/dev/null || return 0
  [[ $s == *') '* ]] || return 0
  s=${s##*) }
  for ((i = 0; i < 19; i++)); do s=${s#* }; done
  REPLY=${s%% *}
}
born=
if (( pane )); then started "$pane"; born=$REPLY; fi
alive() {
  kill -0 "$pane" 2>/dev/null || return 1
  [[ -z $born ]] && return 0
  started "$pane"
  [[ -z $REPLY || $REPLY == "$born" ]]
}
[[ $max =~ ^[0-9]+$ && -n $log && $keep =~ ^[1-9][0-9]*$ ]] || max=0
size=0
if (( max )); then size=$(wc -c < "$log" 2>/dev/null) || size=0; fi
rotfail=-1
# rotate renames the log once it reached max bytes (see logwriter.pl).
rotate() {
  (( SECONDS != rotfail )) || return
  # Not ours to rename (removed, or rotated by another writer): the check
  # once a second handles it.
  [[ $log -ef /dev/fd/1 && ! -L $log ]] || return
  size=$(wc -c < "$log" 2>/dev/null) || return
  (( size >= max )) || return
  # Writers of one log rotate it one at a time (flock(1) on the file,
  # where util-linux is there), and check again once they hold it.
  local i ok=0 locked=0
  flock -x 1 2>/dev/null && locked=1
  if [[ $log -ef /dev/fd/1 && ! -L $log ]]; then
    for (( i = keep - 1; i >= 1; i-- )); do
      [[ -e $log.$i ]] && mv -f -- "$log.$i" "$log.$((i + 1))" 2>/dev/null
    done
    mv -f -- "$log" "$log.1" 2>/dev/null && ok=1
  fi
  (( locked )) && flock -u 1 2>/dev/null
  if (( ok )) && exec >>"$log"; then size=0; else rotfail=$SECONDS; fi
}
strip_escapes() {
  local IFS=$'\e' parts p h i osc=0
  read -r -a parts <<< "$1"
  out=${parts[0]}
  for (( i = 1; i < ${#parts[@]}; i++ )); do
    p=${parts[i]} h=${p:0:64}
    if (( osc )); then
      # An OSC ended by ESC \ : drop the backslash.
      osc=0
      [[ $h == \\* ]] && { out+=${p:1}; continue; }
    fi
    if [[ $h =~ ^\[[0-?]*[\ -/]*[@-~] ]]; then
      out+=${p:${#BASH_REMATCH}}
    elif [[ $h == \]* ]]; then
      if [[ $h =~ ^\][^$'\a']*$'\a' ]]; then out+=${p:${#BASH_REMATCH}}; else osc=1; fi
    elif [[ $h =~ ^[\(\)*+][0-9A-Za-z] ]]; then
      out+=${p:2}
    elif [[ $h =~ ^[@-Z\\_=\>-] ]]; then
      out+=${p:1}
    else
      out+=$p
    fi
  done
}
lost=0 ended=0 partial=
emit() {
  local l=$1 t s ms
  t=${EPOCHREALTIME:-}
  t=${t/,/.}
  if [[ $t == *.* ]]; then s=${t%.*} ms=${t#*.}; ms=${ms:0:3}; else s=-1 ms=000; fi
  if (( lost )); then
    # The disk was full: once writing works again, say what was lost.
    if printf '[%(%Y-%m-%d %H:%M:%S)T.%s] [launcher] %d line(s) of output lost: %s\n' "$s" "$ms" "$lost" "write failed (no space left on device?)" 2>/dev/null; then
      lost=0
    else
      (( lost++ )); return
    fi
  fi
  if [[ -n $log ]] && (( SECONDS != checked )); then
    # Once a second: a log removed while the process runs is created again.
    checked=$SECONDS
    if [[ ! $log -ef /dev/fd/1 && ! -L $log ]]; then
      mkdir -p -m 700 -- "${log%/*}" 2>/dev/null
      rotated=0
      for (( i = 1; i <= keep && !rotated; i++ )); do
        [[ $log.$i -ef /dev/fd/1 ]] && rotated=1
      done
      if exec >>"$log"; then
        (( rotated )) || printf '[%(%Y-%m-%d %H:%M:%S)T.%s] [launcher] %s\n' "$s" "$ms" "the log file was removed while the process ran: created again; output written in between may be lost" 2>/dev/null
      fi
    fi
  fi
  if printf '[%(%Y-%m-%d %H:%M:%S)T.%s] %s\n' "$s" "$ms" "$l" 2>/dev/null; then
    if (( max )); then
      local LC_ALL=C
      (( size += 27 + ${#l} ))
      (( size < max )) || rotate
    fi
  else
    (( lost++ ))
  fi
}
while :; do
  if (( pane )); then
    IFS= read -r -t "$( (( ended )) && echo 0.2 || echo 10)" l
  else
    IFS= read -r l
  fi
  rc=$?
  if (( rc > 128 )); then
    # Quiet: keep what came of a line, and end with the pane.
    partial+=$l
    alive || break
    # The pane may have missed the first USR1 (it came just before its
    # wait): again, for as long as the pane would wait (2 s).
    if (( ended && ended < 10 )); then
      kill -USR1 "$pane" 2>/dev/null
      ended=$((ended + 1))
      continue
    fi
    ended=0
    continue
  fi
  l=$partial$l partial=
  (( rc == 0 )) || [[ -n $l ]] || break
  if [[ $l == *$'\r'* ]]; then
    # Progress-bar rewrites: keep what follows the last CR (split with read:
    # ${l##*CR} is quadratic).
    while [[ $l == *$'\r' ]]; do l=${l%$'\r'}; done
    if [[ $l == *$'\r'* ]]; then IFS=$'\r' read -r -a segs <<< "$l"; l=${segs[${#segs[@]}-1]}; fi
  fi
  if [[ $l == *$'\e'* ]]; then
    res=
    while (( ${#l} > 65536 )); do
      # Cut before the piece's last ESC, so no sequence is split.
      c=${l:0:65536} h=${c%$'\e'*}
      [[ -z $h ]] && h=$c
      strip_escapes "$h"; res+=$out; l=${l:${#h}}
    done
    strip_escapes "$l"; l=$res$out
  fi
  if [[ $l == *[$'\x01'-$'\x08'$'\x0b'-$'\x1f'$'\x7f']* ]]; then
    if (( ${#l} < 4096 )); then
      l=${l//[$'\x01'-$'\x08'$'\x0b'-$'\x1f'$'\x7f']/}
    else
      # Each bash replacement copies the line: tr is linear.
      l=$(printf '%s' "$l" | tr -d '\001-\010\013-\037\177'; printf .); l=${l%.}
    fi
  fi
  if [[ -n $tag && $l == ?*"[launcher] "*" (run $tag)" ]]; then
    # Launcher's line after output without a newline: a line of its own.
    head=${l%%"[launcher] "*}
    if [[ -n $head ]]; then emit "$head"; l=${l:${#head}}; fi
  fi
  emit "$l"
  if [[ -n $tag && -n $envf && $l =~ ^\[launcher\]\ starting\ [^\ ]+\ \(run\ ${tag}\)$ ]]; then
    rm -f -- "$envf" 2>/dev/null
    envf=
  fi
  if [[ -n $tag && $l =~ ^\[launcher\]\ [^\ ]+\ exited\ with\ code\ -?[0-9]+\ \(run\ ${tag}\)$ ]]; then
    (( pane )) && alive && kill -USR1 "$pane" 2>/dev/null
    ended=1
  fi
  (( rc == 0 )) || break
done
