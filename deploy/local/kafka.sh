#!/usr/bin/env bash
# A real single-node Apache Kafka 3.9 broker (KRaft) on 127.0.0.1, for the demo, the tests and CI.
#
#   deploy/local/kafka.sh start    start a fresh one (or reuse the one already running); last stdout line: 127.0.0.1:PORT
#   deploy/local/kafka.sh start --keep-data
#                                  start the stopped broker again with its port, topics and offsets (fault tests)
#   deploy/local/kafka.sh stop     stop it (its data stays until the next plain start)
#   deploy/local/kafka.sh status   print the bootstrap address if running, exit 1 if not
#
# The jars come from Maven Central (deploy/local/pom.xml) and are cached outside the repository in
# $DISMON_CACHE (default ~/.cache/dismon). Environment: KAFKA_PORT (default: 9092, or a free port if taken),
# KAFKA_HEAP (default 512m), DISMON_KAFKA_STATE (state directory; default $DISMON_CACHE/kafka-state).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${DISMON_CACHE:-$HOME/.cache/dismon}
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
libs="$cache/kafka-$version/libs"
state=${DISMON_KAFKA_STATE:-$cache/kafka-state}
heap=${KAFKA_HEAP:-512m}

log() { echo "kafka.sh: $*" >&2; }

fetch_jars() {
  [ -f "$libs/.complete" ] && return
  log "fetching Kafka $version jars from Maven Central into $libs"
  mkdir -p "$libs"
  mvn -q -f "$here/pom.xml" dependency:copy-dependencies -DoutputDirectory="$libs" >&2
  touch "$libs/.complete"
}

running_address() {
  [ -f "$state/pid" ] && [ -f "$state/address" ] || return 1
  kill -0 "$(cat "$state/pid")" 2>/dev/null || return 1
  cat "$state/address"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pick_port() {
  local port=$1
  while ! port_free "$port"; do port=$((port + 1)); done
  echo "$port"
}

write_config() {
  local port=$1 controller=$2
  cat > "$state/server.properties" <<CONF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$state/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
# Backfills carry their events' own (old) timestamps: time-based retention would delete them on arrival.
log.retention.ms=-1
# Hostile-input tests send 10 MB messages: the broker must accept them so the worker can dead-letter them.
message.max.bytes=16777216
replica.fetch.max.bytes=16777216
CONF
  cat > "$state/log4j.properties" <<CONF
log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$state/broker.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaRaftServer=INFO
CONF
}

start() {
  if address=$(running_address); then
    log "reusing the broker already running (pid $(cat "$state/pid"))"
    echo "$address"
    return
  fi
  command -v java >/dev/null || { log "java is not installed"; exit 1; }
  fetch_jars
  mkdir -p "$state"
  local port controller classpath
  classpath="$libs/*"
  if [ "${1:-}" = "--keep-data" ] && [ -f "$state/server.properties" ] && [ -d "$state/data" ]; then
    # The same broker again (its port, topics, offsets and group state), e.g. after a fault-injection stop.
    port=$(sed -n 's/^listeners=PLAINTEXT:\/\/127.0.0.1:\([0-9]*\),.*/\1/p' "$state/server.properties")
    port_free "$port" || { log "port $port is taken; cannot restart the same broker"; exit 1; }
    rm -f "$state/broker.log"
  else
    port=$(pick_port "${KAFKA_PORT:-9092}")
    controller=$(pick_port $((port + 1000)))
    rm -rf "$state/data" "$state/broker.log" "$state/stdout.log"
    write_config "$port" "$controller"
    local cluster_id
    cluster_id=$(java -cp "$classpath" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    java -Dlog4j.configuration="file:$state/log4j.properties" -cp "$classpath" kafka.tools.StorageTool format \
      -t "$cluster_id" -c "$state/server.properties" >"$state/format.log" 2>&1 \
      || { log "formatting the storage failed:"; cat "$state/format.log" >&2; exit 1; }
  fi
  nohup java -Xms"$heap" -Xmx"$heap" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$state/log4j.properties" -cp "$classpath" kafka.Kafka "$state/server.properties" \
    >"$state/stdout.log" 2>&1 &
  echo $! > "$state/pid"
  echo "127.0.0.1:$port" > "$state/address"
  local waited=0
  until grep -q "started (kafka.server.KafkaRaftServer)" "$state/broker.log" 2>/dev/null && ! port_free "$port"; do
    if ! kill -0 "$(cat "$state/pid")" 2>/dev/null; then
      log "the broker exited during start-up:"; tail -n 30 "$state/stdout.log" "$state/broker.log" >&2 || true
      rm -f "$state/pid"; exit 1
    fi
    if [ "$waited" -ge 120 ]; then
      log "the broker did not become ready within 120 s"; stop; exit 1
    fi
    sleep 1; waited=$((waited + 1))
  done
  log "broker $version ready on 127.0.0.1:$port after ${waited}s (state: $state)"
  echo "127.0.0.1:$port"
}

stop() {
  [ -f "$state/pid" ] || { log "not running"; return 0; }
  local pid; pid=$(cat "$state/pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    log "stopped (pid $pid)"
  fi
  rm -f "$state/pid" "$state/address"
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop ;;
  status) running_address || exit 1 ;;
  *) echo "usage: $0 start [--keep-data]|stop|status" >&2; exit 2 ;;
esac
