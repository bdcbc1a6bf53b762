#!/bin/bash
# concert_launcher's wrapper as master 625cf46 installs it in
# /tmp/concert_launcher_wrapper.bash (seed-behaviour.md §3.3, issue 16): the
# tests start windows exactly as concert_launcher does, to adopt them. The
# log directory is $CONCERT_LAUNCHER_STDOUT_PATH (default /tmp), as on kyon.
NAME=$1
CMD=$2
LOG=${CONCERT_LAUNCHER_STDOUT_PATH:-/tmp}/$NAME.stdout
trap 'rm -f "/tmp/$NAME.STARTING" "/tmp/$NAME.KILLING"' EXIT
echo "starting process $NAME ($CMD)" >> "$LOG"
script --append --flush --return --command "bash -ic $(printf %q "$CMD")" "$LOG"
RET=$?
echo "process exited with code $RET" >> "$LOG"
sleep 1
exit $RET
