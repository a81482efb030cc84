#!/usr/bin/env bash
# The README's walk-through on real people, printed as a console transcript:
#   bash experiments/walkthrough.sh [WORKDIR]
# Three ECG-ID persons enrolled from rec_1 with the default model, a later record identified, a
# claim verified, an impostor rejected and an unenrolled person refused. Needs ../shared/data.
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d)}"
ecgbio="${ECGBIO:-$repo/.venv/bin/ecgbio}"
mkdir -p "$work"
cd "$work" || exit 2
rm -rf people
ln -sfn "$repo/../shared/data/ecg-id-database-1.0.0" ecgid

run() {  # echo the command as typed (with its comment), then run it; paths shown relative
  local comment="$1"; shift
  echo "\$ ecgbio $*${comment:+     # $comment}"
  "$ecgbio" "$@" 2>&1 | sed "s|$work/||g"
}
run "" enroll ecgid/Person_01/rec_1.hea --gallery people --id person01
run "" enroll ecgid/Person_02/rec_1.hea --gallery people --id person02
run "" enroll ecgid/Person_03/rec_1.hea --gallery people --id person03
run "2004-12-28; rec_1: 2004-12-07" identify ecgid/Person_02/rec_4.hea --gallery people
run "another day" verify ecgid/Person_01/rec_3.hea --gallery people --claim person01
run "an impostor" verify ecgid/Person_01/rec_2.hea --gallery people --claim person03
run "nobody enrolled" identify ecgid/Person_10/rec_1.hea --gallery people
exit 0
