#!/bin/bash
# Calls/s and Redis commands per 1,000 calls of `simulate --processes` against a redis-server
# on 127.0.0.1:6391 (start one: redis-server --port 6391 --bind 127.0.0.1 --save "" --appendonly no).
# Build first: cargo build -p quota-core --release --features sim,redis --example simulate
# Usage: shared_redis.sh ADMISSION PROCESSES CALLS [CONFIG]
# (CONFIG: a quota.toml, e.g. core/benches/one_limit.toml or two_limits.toml: a limit, or two,
# of 10^9 per service, so nothing is denied). SYNC=background in the environment: each process
# syncs on its tracker's own thread (simulate --sync background), which leases Leased blocks ahead.
SIM="$(dirname "$0")/../../target/release/examples/simulate"
cmds() { redis-cli -p 6391 INFO stats | grep total_commands_processed | cut -d: -f2 | tr -d "\r"; }
scripts() { redis-cli -p 6391 INFO commandstats | grep -E "cmdstat_(evalsha|eval):" | grep -o "calls=[0-9]*" | cut -d= -f2 | paste -sd+ | bc; }
redis-cli -p 6391 flushall >/dev/null
redis-cli -p 6391 config resetstat >/dev/null
before=$(cmds); sb=0
if [ -n "$4" ]; then
  out=$($SIM --processes $2 --store redis://127.0.0.1:6391 --admission $1 --config "$4" --calls $3 --sync ${SYNC:-inline})
else
  out=$($SIM --processes $2 --store redis://127.0.0.1:6391 --admission $1 --limit 1000000000 --calls $3 --sync ${SYNC:-inline})
fi
after=$(cmds); sa=$(scripts)
rate=$(echo "$out" | head -1 | grep -o '[0-9]* calls/s')
echo "$1 sync=${SYNC:-inline} procs=$2 calls=$3 ${4:-} $rate redis_cmds=$((after-before)) per1000=$(( (after-before)*1000/$3 )) scripts=${sa:-0}"
