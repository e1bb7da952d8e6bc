#!/bin/sh
# bench/callgrind.sh [options]: instructions per handshake, counted by valgrind's callgrind, for a
# figure that does not move with the machine: handshake CPU times on a shared machine move by 2×
# between runs; these counts, by less than 1 % between repeats. Each server runs in a fresh
# process under `valgrind --tool=callgrind --instr-atstart=no` (Node at about a quarter of its
# speed until counting starts, a fiftieth after); the load generator, native, opens --warmup=6000
# handshakes uncounted (fewer leave V8 warming up: 300 doubled raw ws's count), then
# `callgrind_control -i on`, --handshakes=1000 counted ones (100 in flight), `-i off` and `-d`.
# It prints instructions per handshake for raw ws, reference g. (and g2. under 100 routes), ours
# on Express, @fastify/websocket and ours on Fastify; plain, guarded and with 100 plain HTTP
# routes; with and without V8's garbage collections (a count holds one scavenge or none, at the
# same handshake in every repeat: compare the counts without GC); each with its ratio to raw ws
# and ours to the same platform's floor.
# V8 sizes its heap by the clock, and under valgrind a busy server looks idle to it: Node runs
# with no memory reducer and a young generation held at the size a busy server grows it to.
# About 7 minutes with the defaults; needs valgrind. The dumps stay in a temporary directory, for
# callgrind_annotate; the figures go to bench/results/<date>-callgrind.json.
#   bench/callgrind.sh
#   bench/callgrind.sh --only=ours --workloads=handshakes-1000-guard,handshakes-1000-guard-routes100
#   bench/callgrind.sh --repeats=3 --handshakes=2000
# With an echo workload (--workloads=echo-1000-text,echo-50-json), instructions per echoed message:
# the closed loops run 20 s uncounted, then 10 s counted, divided by the messages echoed meanwhile.
set -eu
cd "$(dirname "$0")/.."
node_modules/.bin/tsc -p bench/tsconfig.json
# the Node of the devDependencies (24), as npm run bench runs, rather than the one on the PATH
exec node_modules/.bin/node bench/.build/bench/run.js --callgrind "$@"
