package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// ------------------------------------------------------- kafka-cluster

// kafkaClusterSize is the number of brokers of kafka-cluster: three KRaft
// nodes, each a combined broker and controller (a static quorum of three
// voters: one may die, two keep the quorum and the in-sync replicas).
const kafkaClusterSize = 3

// kafkaClusterPorts are node i's (1-based) broker and controller ports:
// HGP_MW_KAFKA_CLUSTER_PORT (19200) + i and + 10 + i.
func kafkaClusterPorts(c *Config, i int) (broker, controller int) {
	return c.KafkaClusterPort + i, c.KafkaClusterPort + 10 + i
}

// kafkaClusterBrokers is "127.0.0.1:19201,127.0.0.1:19202,127.0.0.1:19203".
func kafkaClusterBrokers(c *Config) string {
	addrs := make([]string, kafkaClusterSize)
	for i := range kafkaClusterSize {
		b, _ := kafkaClusterPorts(c, i+1)
		addrs[i] = hostPort(b)
	}
	return strings.Join(addrs, ",")
}

// kafkaClusterVoters is the static controller quorum: "1@127.0.0.1:19211,...".
func kafkaClusterVoters(c *Config) string {
	v := make([]string, kafkaClusterSize)
	for i := range kafkaClusterSize {
		_, ctl := kafkaClusterPorts(c, i+1)
		v[i] = strconv.Itoa(i+1) + "@" + hostPort(ctl)
	}
	return strings.Join(v, ",")
}

// kafkaClusterName is node i's server name (its state dir under <run>).
func kafkaClusterName(i int) string { return "kafka-cluster-" + strconv.Itoa(i) }

// kafkaClusterIDFile holds the cluster id every node's storage is formatted
// with (written by the first node that formats).
func kafkaClusterIDFile(c *Config) string { return filepath.Join(c.Run, "kafka-cluster.id") }

func kafkaClusterServerLog(c *Config, i int) string {
	return filepath.Join(c.Dir(kafkaClusterName(i)), "logs", "server.log")
}

// kafkaClusterNodes are the three brokers, in node order.
var kafkaClusterNodes = func() []*server {
	out := make([]*server, kafkaClusterSize)
	for n := range kafkaClusterSize {
		out[n] = kafkaClusterNode(n + 1)
	}
	return out
}()

func kafkaClusterNode(i int) *server {
	name := kafkaClusterName(i)
	return &server{
		name:         name,
		group:        "kafka-cluster",
		exe:          func(*Config) string { return "java" },
		startTimeout: 180 * time.Second, stopTimeout: 60 * time.Second,
		ports: func(c *Config) []int {
			b, ctl := kafkaClusterPorts(c, i)
			return []int{b, ctl}
		},
		addr:    func(c *Config) string { b, _ := kafkaClusterPorts(c, i); return hostPort(b) },
		prepare: func(ctx context.Context, m *mw) error { return kafkaClusterPrepare(ctx, m, i) },
		beforeLaunch: func(c *Config) error {
			l := kafkaClusterServerLog(c, i)
			if _, err := os.Stat(l); err == nil {
				return os.Rename(l, l+".prev")
			}
			return nil
		},
		command: func(c *Config) ([]string, error) {
			d := c.Dir(name)
			argv := append([]string{"java"}, c.KafkaClusterHeap...)
			return append(argv, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
				"-XX:+ExplicitGCInvokesConcurrent", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
				"-Dkafka.logs.dir="+filepath.Join(d, "logs"), "-Dlog4j2.configurationFile="+filepath.Join(d, "log4j2.properties"),
				"-cp", filepath.Join(c.KafkaHome, "libs", "*"), "kafka.Kafka", filepath.Join(d, "server.properties")), nil
		},
		health: func(ctx context.Context, c *Config) error { return kafkaClusterHealth(ctx, c, i) },
		env: func(c *Config) ([][2]string, error) {
			return [][2]string{
				{"HGP_TEST_KAFKA_CLUSTER_BROKERS", kafkaClusterBrokers(c)},
				{"HGP_MW_KAFKA_HOME", c.KafkaHome},
			}, nil
		},
		extraLog: func(c *Config) string { return kafkaClusterServerLog(c, i) },
	}
}

// kafkaClusterPrepare writes node i's configs and, on its first start,
// formats its storage with the cluster's id (created by the first node).
func kafkaClusterPrepare(ctx context.Context, m *mw, i int) error {
	c := &m.cfg
	d := c.Dir(kafkaClusterName(i))
	for _, sub := range []string{"data", "logs"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
			return err
		}
	}
	files := map[string]string{
		"server.properties":       kafkaClusterProperties(c, i),
		"log4j2.properties":       kafkaLog4j2(d),
		"tools-log4j2.properties": kafkaToolsLog4j2,
	}
	for f, text := range files {
		if err := writeConfig(filepath.Join(d, f), text); err != nil {
			return err
		}
	}
	if _, err := os.Stat(filepath.Join(d, "data", "meta.properties")); err == nil {
		return nil
	}
	cid, err := kafkaClusterID(c)
	if err != nil {
		return err
	}
	t0 := time.Now()
	m.logf("%s: formatting storage (cluster id %s)", kafkaClusterName(i), cid)
	// a static quorum (controller.quorum.voters): no --standalone, no --initial-controllers
	if err := runLogged(ctx, filepath.Join(d, "format.log"), kafkaJavaLog(c, d, "kafka.tools.StorageTool",
		"format", "--cluster-id="+cid, "-c", filepath.Join(d, "server.properties"))...); err != nil {
		return fmt.Errorf("%s: storage format failed: %w", kafkaClusterName(i), err)
	}
	m.logf("%s: storage formatted in %s", kafkaClusterName(i), since(t0))
	return nil
}

// kafkaClusterID reads the cluster id, creating it when no node has one yet.
func kafkaClusterID(c *Config) (string, error) {
	p := kafkaClusterIDFile(c)
	if b, err := os.ReadFile(p); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return "", err
	}
	cid := base64.RawURLEncoding.EncodeToString(id)
	if err := writeConfig(p, cid+"\n"); err != nil {
		return "", err
	}
	return cid, nil
}

// kafkaClusterProperties is node i's server.properties: combined broker and
// controller of a three-voter static quorum; every topic replicated three
// times with two in-sync replicas required for an acks=all write (what
// Kafka's operators recommend for durability: one broker may be down or
// lagging, none can lose an acknowledged write alone); no unclean leader
// election.
func kafkaClusterProperties(c *Config, i int) string {
	b, ctl := kafkaClusterPorts(c, i)
	return fmt.Sprintf(`# generated by scripts/mw.sh — edits are overwritten on every start
# kafka-cluster node %[1]d of %[2]d: KRaft, combined broker + controller, static quorum
process.roles=broker,controller
node.id=%[1]d
controller.quorum.voters=%[3]s
listeners=PLAINTEXT://%[4]s:%[5]d,CONTROLLER://%[4]s:%[6]d
advertised.listeners=PLAINTEXT://%[4]s:%[5]d
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=%[7]s/data
num.partitions=3
auto.create.topics.enable=true
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
offsets.topic.replication.factor=3
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
# a killed node re-registers once its session expired (see docs/middleware.md)
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1000
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
log.retention.hours=24
`, i, kafkaClusterSize, kafkaClusterVoters(c), Host, b, ctl, c.Dir(kafkaClusterName(i)))
}

// kafkaClusterHealth: this run's "Kafka Server started" line in node i's
// log, then kafka-go against its own listener: ApiVersions, and Metadata
// must list node i as a registered broker (it joined the quorum's view).
func kafkaClusterHealth(ctx context.Context, c *Config, i int) error {
	name := kafkaClusterName(i)
	b, err := os.ReadFile(kafkaClusterServerLog(c, i))
	if err != nil || !strings.Contains(string(b), "Kafka Server started") {
		return fmt.Errorf("%s: no \"Kafka Server started\" in this run's server.log yet", name)
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	d := kafka.Dialer{Timeout: checkTimeout, ClientID: "hgp-mw"}
	port, _ := kafkaClusterPorts(c, i)
	conn, err := d.DialContext(ctx, "tcp", hostPort(port))
	if err != nil {
		return fmt.Errorf("%s dial: %w", name, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.ApiVersions(); err != nil {
		return fmt.Errorf("%s ApiVersions: %w", name, err)
	}
	brokers, err := conn.Brokers()
	if err != nil {
		return fmt.Errorf("%s Metadata: %w", name, err)
	}
	if !slices.ContainsFunc(brokers, func(b kafka.Broker) bool { return b.ID == i }) {
		return fmt.Errorf("%s Metadata: node %d is not registered yet (%d brokers)", name, i, len(brokers))
	}
	return nil
}
