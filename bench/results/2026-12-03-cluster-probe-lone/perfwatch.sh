#!/bin/bash
while ! pgrep -f 'loadtest run' >/dev/null; do sleep 0.2; done
sleep 6
perf record -a -g -F 499 -o /tmp/perf-cluster.data -- sleep 10 > /tmp/perf-rec.log 2>&1
