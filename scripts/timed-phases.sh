#!/usr/bin/env bash
# Run the phases of `make test` in order, each given as "NAME: COMMAND", stopping at the first
# that fails, and print how long each took and the total, also when one failed (CI's budget
# for the whole is 40 minutes on 2 cores: the figures show which phase ate it).
#   scripts/timed-phases.sh "unit: pytest tests/unit" "lint: ansible-lint"
set -uo pipefail

started=$SECONDS
summary=()
rc=0

report() {
    echo
    echo "==== make test: phases"
    for line in "${summary[@]}"; do echo "  $line"; done
    local total=$((SECONDS - started))
    printf '  %-9s %4dm%02ds\n' total $((total / 60)) $((total % 60))
}

for phase in "$@"; do
    name=${phase%%:*}
    command=${phase#*:}
    begun=$SECONDS
    echo "==== $name:$command"
    bash -c "$command"
    rc=$?
    took=$((SECONDS - begun))
    outcome=ok
    [ "$rc" -eq 0 ] || outcome="FAILED (exit $rc)"
    summary+=("$(printf '%-9s %4dm%02ds  %s' "$name" $((took / 60)) $((took % 60)) "$outcome")")
    [ "$rc" -eq 0 ] || break
done
report
exit "$rc"
