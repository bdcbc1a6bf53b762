# Prepares launcher's per-user state directory on a machine, refusing places
# another user could write, the way OpenSSH's StrictModes does: the directory
# must be the caller's and not group/world writable, and every directory above
# it root's or the caller's and not group/world writable (a root-owned sticky
# directory such as /tmp is fine: nobody else can replace what is in it).
# Arguments: MODE DIR [NAME CONTENT]...
#   MODE "dir":     create DIR (0700) and check it.
#   MODE "install": also put each helper NAME in DIR/bin with exactly CONTENT
#                   (rewritten when it differs: checked by content, not by
#                   existence), create DIR/run, and print the log writer this
#                   machine can run (perl, when the helper logwriter.pl-* runs
#                   with --probe, or bash).
#   MODE "install:LOGDIR": install, and create and check LOGDIR as "dir"
#                   does (a first spawn's two steps in one command).
umask 077
mode=$1 d=$2; shift 2
logdir=
case $mode in install:*) logdir=${mode#install:} mode=install ;; esac
me=$(id -u)
refuse() { printf 'launcher: refusing to use %s: %s\n' "$1" "$2" >&2; exit 3; }
check() {
  [ -L "$1" ] && refuse "$1" "it is a symbolic link (use the real path)"
  p=$(cd -P -- "$1" 2>/dev/null && pwd) || refuse "$1" "cannot enter it"
  first=1
  while :; do
    st=$(stat -L -c '%u %a' -- "$p") || refuse "$p" "cannot read its owner and mode"
    set -- $st
    owner=$1 m=$((0$2))
    if [ "$first" = 1 ]; then
      [ "$owner" = "$me" ] || refuse "$p" "it is owned by uid $owner, not by you (uid $me): use a directory of your own"
      [ $((m & 18)) = 0 ] || refuse "$p" "its mode $2 lets other users write in it: chmod go-w $p"
      first=0
    else
      [ "$owner" = "$me" ] || [ "$owner" = 0 ] || refuse "$p" "a directory above the state directory is owned by uid $owner: other users could replace it"
      if [ $((m & 18)) != 0 ] && { [ "$owner" != 0 ] || [ $((m & 512)) = 0 ]; }; then
        refuse "$p" "a directory above the state directory (mode $2) is writable by other users"
      fi
    fi
    [ "$p" = / ] && break
    p=$(dirname -- "$p")
  done
}
mkdir -p -- "$d" || exit 1
check "$d"
[ "$mode" = install ] || exit 0
for sub in bin run; do
  mkdir -p -- "$d/$sub" || exit 1
  check "$d/$sub"
done
writer=
while [ $# -ge 2 ]; do
  f=$d/bin/$1
  case $1 in logwriter.pl-*) writer=$f ;; esac
  if [ -L "$f" ] || ! printf '%s' "$2" | cmp -s - "$f" 2>/dev/null; then
    rm -f -- "$f.tmp.$$" && (set -C && printf '%s' "$2" > "$f.tmp.$$") && mv -f -- "$f.tmp.$$" "$f" || { rm -f -- "$f.tmp.$$"; exit 1; }
  fi
  shift 2
done
if [ -n "$logdir" ]; then
  mkdir -p -- "$logdir" || exit 1
  check "$logdir"
fi
# The perl writer where it can run (its --probe loads what it needs), else
# the bash one.
if [ -n "$writer" ] && perl "$writer" --probe </dev/null >/dev/null 2>&1; then echo perl; else echo bash; fi
