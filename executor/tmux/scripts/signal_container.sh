# Runs inside a container: signals the processes of one run, found by the
# LAUNCHER_TAG in their environment. Arguments: SIGNAL TAG
sig=$1 tag=$2
for f in $(grep -lzxF "LAUNCHER_TAG=$tag" /proc/[0-9]*/environ 2>/dev/null); do
  p=${f#/proc/}; p=${p%/environ}
  kill -s "$sig" "$p" 2>/dev/null
done
exit 0
