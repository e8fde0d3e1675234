#!/bin/sh
# bpftrace-merge.sh [FILE...]: turn dmaspec.bt's output into a canonical trace on standard output.
#
# bpftrace writes each CPU's buffer as it drains it, so lines from different CPUs arrive out of order.
# This keeps the first header, sorts the events by "ts" (stable: one CPU's lines keep their order),
# turns bpftrace's "Lost N events" into lost_events annotations placed at the last event read before
# the report (bpftrace reports a loss after it happened: where exactly is unknown), and drops anything
# else (attach messages, warnings), saying so on standard error.

set -eu

awk '
	function key(k) { seq++; printf "%s\t%d\t%s\n", k, seq, $0 }
	/^\{"format":"dmaspec-trace"/ {
		if (!header) { header = 1; key(-1) } else { dropped++ }
		next
	}
	/^\{"ts":[0-9]+,/ {
		ts = substr($0, 7); sub(/,.*/, "", ts); key(ts); next
	}
	/^Lost [0-9]+ events/ {
		lost += $2
		$0 = "{\"ts\":" (ts == "" ? 0 : ts) ",\"op\":\"lost_events\",\"kind\":\"annotation\",\"tid\":0,\"args\":{\"count\":" $2 "}}"
		key(ts == "" ? 0 : ts); next
	}
	/^[[:space:]]*$/ { next }
	{ dropped++; if (dropped <= 5) print "bpftrace-merge: dropped: " $0 | "cat 1>&2" }
	END {
		if (dropped > 5) print "bpftrace-merge: dropped " dropped " lines in all" | "cat 1>&2"
		if (lost) print "bpftrace-merge: WARNING: bpftrace lost " lost " events" | "cat 1>&2"
		if (!header) print "bpftrace-merge: no dmaspec.bt header in the input" | "cat 1>&2"
	}
' "$@" | sort -t "$(printf '\t')" -k1,1n -k2,2n | cut -f3-
