#!/usr/bin/env bash
# A real single-node Apache Kafka 3.9 broker (KRaft) on 127.0.0.1, for the demo, the tests and CI.
#
#   deploy/local/kafka.sh start    start a fresh one (or reuse the one already running); last stdout line: 127.0.0.1:PORT
#   deploy/local/kafka.sh start --keep-data
#                                  start the stopped broker again with its port, topics and offsets (fault tests)
#   deploy/local/kafka.sh stop     stop it (its data stays until the next plain start)
#
# Besides the PLAINTEXT listener, the broker has a TLS + SASL/PLAIN listener with a CA made on the fly; its
# address, user, password and CA file are in $DISMON_KAFKA_STATE/secure.env as DISMON_* variables, ready for
#   env $(cat ~/.cache/dismon/kafka-state/secure.env) dismon worker --policy P
#   deploy/local/kafka.sh status   print the bootstrap address if running, exit 1 if not
#   deploy/local/kafka.sh secure-env   print DISMON_* settings for its TLS + SASL/PLAIN listener
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

# A self-signed CA, a broker certificate for 127.0.0.1 and a random SASL/PLAIN password, made on every fresh start.
make_tls() {
  local dir="$state/tls" pass
  rm -rf "$dir"; mkdir -p "$dir"
  pass=$(openssl rand -hex 16)
  {
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=dismon local CA" -keyout "$dir/ca.key" -out "$dir/ca.pem"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$dir/broker.key" -out "$dir/broker.csr"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$dir/san.ext"
    openssl x509 -req -in "$dir/broker.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 30 \
      -extfile "$dir/san.ext" -out "$dir/broker.pem"
    openssl pkcs12 -export -in "$dir/broker.pem" -inkey "$dir/broker.key" -certfile "$dir/ca.pem" -name broker \
      -out "$dir/broker.p12" -passout "pass:$pass"
  } >"$dir/openssl.log" 2>&1 || { log "making the TLS certificates failed:"; cat "$dir/openssl.log" >&2; exit 1; }
  chmod 600 "$dir"/*.key "$dir/broker.p12"
  echo "$pass" > "$dir/password"
  chmod 600 "$dir/password"
}

write_config() {
  local port=$1 controller=$2 secure=$3 pass
  pass=$(cat "$state/tls/password")
  cat > "$state/secure.env" <<ENV
DISMON_BOOTSTRAP_SERVERS=127.0.0.1:$secure
DISMON_SECURITY_PROTOCOL=SASL_SSL
DISMON_SASL_MECHANISM=PLAIN
DISMON_SASL_USERNAME=dismon
DISMON_SASL_PASSWORD=$pass
DISMON_SSL_CAFILE=$state/tls/ca.pem
ENV
  chmod 600 "$state/secure.env"
  cat > "$state/server.properties" <<CONF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$secure,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$secure
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
# TLS + SASL/PLAIN listener (user dismon; its password and the CA are in secure.env next to this file).
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_dismon="$pass";
ssl.keystore.type=PKCS12
ssl.keystore.location=$state/tls/broker.p12
ssl.keystore.password=$pass
ssl.key.password=$pass
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
  local port controller secure classpath
  classpath="$libs/*"
  if [ "${1:-}" = "--keep-data" ] && [ -f "$state/server.properties" ] && [ -d "$state/data" ]; then
    # The same broker again (its port, topics, offsets and group state), e.g. after a fault-injection stop.
    port=$(sed -n 's/^listeners=PLAINTEXT:\/\/127.0.0.1:\([0-9]*\),.*/\1/p' "$state/server.properties")
    port_free "$port" || { log "port $port is taken; cannot restart the same broker"; exit 1; }
    rm -f "$state/broker.log"
  else
    port=$(pick_port "${KAFKA_PORT:-9092}")
    controller=$(pick_port $((port + 1000)))
    secure=$(pick_port $((port + 2000)))
    rm -rf "$state/data" "$state/broker.log" "$state/stdout.log"
    make_tls
    write_config "$port" "$controller" "$secure"
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
  secure-env) running_address >/dev/null && cat "$state/secure.env" || { log "not running"; exit 1; } ;;
  *) echo "usage: $0 start [--keep-data]|stop|status|secure-env" >&2; exit 2 ;;
esac
