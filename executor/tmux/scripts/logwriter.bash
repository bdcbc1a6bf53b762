# Log writer for machines without Perl's Time::HiRes: same output as
# logwriter.pl, slower.
shopt -s extglob
while IFS= read -r l || [[ -n $l ]]; do
  l=${l%%+($'\r')}
  l=${l##*$'\r'}
  l=${l//$'\e['*([0-?])*([ -\/])[@-~]/}
  l=${l//$'\e]'*([!$'\a'$'\e'])@($'\a'|$'\e\\')/}
  l=${l//$'\e'[()*+][0-9A-Za-z]/}
  l=${l//$'\e'[@-Z\\\-_=>]/}
  l=${l//[$'\x01'-$'\x08'$'\x0b'-$'\x1f'$'\x7f']/}
  t=${EPOCHREALTIME:-}
  t=${t/,/.}
  if [[ $t == *.* ]]; then s=${t%.*} ms=${t#*.}; ms=${ms:0:3}; else s=-1 ms=000; fi
  printf '[%(%Y-%m-%d %H:%M:%S)T.%s] %s\n' "$s" "$ms" "$l"
done
