#!/bin/sh
# Brings the broker's topics in line with topics.txt: creates the missing ones, raises a
# partition count that is lower than the file's (Kafka cannot lower one), and sets retention
# and min.insync.replicas. Run by job.yaml with Apache Kafka's own tools; running it again
# changes nothing.
set -eu

bin=/opt/kafka/bin
servers=$KAFKA_BOOTSTRAP_SERVERS

# On descriptor 3, so that no tool reading its standard input can swallow the list.
while read -r topic partitions retention_ms <&3; do
    case $topic in '' | '#'*) continue ;; esac
    echo "topic $topic: $partitions partitions, retention.ms=$retention_ms"
    "$bin/kafka-topics.sh" --bootstrap-server "$servers" --create --if-not-exists \
        --topic "$topic" --partitions "$partitions" \
        --replication-factor "$KAFKA_REPLICATION_FACTOR"
    current=$("$bin/kafka-topics.sh" --bootstrap-server "$servers" --describe --topic "$topic" \
        | sed -n 's/.*PartitionCount: *\([0-9][0-9]*\).*/\1/p' | head -n 1)
    if [ "$current" -lt "$partitions" ]; then
        "$bin/kafka-topics.sh" --bootstrap-server "$servers" --alter \
            --topic "$topic" --partitions "$partitions"
    fi
    "$bin/kafka-configs.sh" --bootstrap-server "$servers" --alter --entity-type topics \
        --entity-name "$topic" \
        --add-config "retention.ms=$retention_ms,min.insync.replicas=$KAFKA_MIN_INSYNC_REPLICAS"
done 3< /etc/ledgerline/kafka-topics/topics.txt
