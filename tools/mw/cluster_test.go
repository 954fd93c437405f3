package main

import (
	"strings"
	"testing"
)

func TestClusterNames(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
		err  string
	}{
		{args: []string{"kafka-cluster"}, want: "kafka-cluster-1 kafka-cluster-2 kafka-cluster-3"},
		{args: []string{"kafka-cluster:2", "kafka-cluster-2"}, want: "kafka-cluster-2"},
		{args: []string{"consul-cluster"}, want: "consul-cluster-1 consul-cluster-2 consul-cluster-3 consul-cluster-client"},
		{args: []string{"consul-cluster:client", "redis"}, want: "consul-cluster-client redis"},
		{args: []string{"redis-cluster:4"}, want: "redis-cluster-4"},
		{args: []string{"redis-cluster:7"}, err: "unknown server 'redis-cluster:7'"},
		{args: []string{"kafka-cluster:4"}, err: "unknown server 'kafka-cluster:4'"},
		{args: []string{"redis:1"}, err: "unknown server 'redis:1'"},
		{args: []string{"kafka:cluster-1"}, err: "unknown server 'kafka:cluster-1'"},
	} {
		list, err := expandNames(tc.args)
		if tc.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
				t.Errorf("%v: error %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || namesOf(list) != tc.want {
			t.Errorf("%v: %q %v, want %q", tc.args, namesOf(list), err, tc.want)
		}
	}
	if s := oneServer("kafka-cluster:3"); s == nil || s.name != "kafka-cluster-3" {
		t.Errorf("oneServer(kafka-cluster:3) = %v", s)
	}
	if s := oneServer("kafka-cluster"); s != nil {
		t.Errorf("oneServer(kafka-cluster) = %s, want none (a group is not one server)", s.name)
	}
}

// The generated configs use the cluster's base ports, each node its own
// ports and state dir, and the durability settings the cluster promises.
func TestClusterConfigsUseThePorts(t *testing.T) {
	c, err := ConfigFrom(envOf(map[string]string{"HGP_MW_ROOT": "/r", "HGP_MW_RUN": "/s",
		"HGP_MW_KAFKA_CLUSTER_PORT": "29200", "HGP_MW_CONSUL_CLUSTER_PORT": "28700", "HGP_MW_REDIS_CLUSTER_PORT": "27100"}))
	if err != nil {
		t.Fatal(err)
	}
	k2 := kafkaClusterProperties(&c, 2)
	for _, want := range []string{
		"node.id=2\n",
		"controller.quorum.voters=1@127.0.0.1:29211,2@127.0.0.1:29212,3@127.0.0.1:29213\n",
		"listeners=PLAINTEXT://127.0.0.1:29202,CONTROLLER://127.0.0.1:29212\n",
		"advertised.listeners=PLAINTEXT://127.0.0.1:29202\n",
		"log.dirs=/s/kafka-cluster-2/data\n",
		"default.replication.factor=3\n", "min.insync.replicas=2\n", "unclean.leader.election.enable=false\n",
		"offsets.topic.replication.factor=3\n", "transaction.state.log.min.isr=2\n",
	} {
		if !strings.Contains(k2, want) {
			t.Errorf("kafka-cluster-2 server.properties lacks %q:\n%s", want, k2)
		}
	}
	if got := kafkaClusterBrokers(&c); got != "127.0.0.1:29201,127.0.0.1:29202,127.0.0.1:29203" {
		t.Errorf("brokers %s", got)
	}
	s3 := consulClusterHCL(&c, 3)
	for _, want := range []string{
		`node_name = "hgp-consul-cluster-3"`, "server = true\nbootstrap_expect = 3\n",
		`data_dir = "/s/consul-cluster-3/data"`,
		`retry_join = ["127.0.0.1:28712", "127.0.0.1:28722", "127.0.0.1:28732"]`,
		"http     = 28730\n", "server   = 28731\n", "serf_lan = 28732\n", "serf_wan = 28733\n", "raft_multiplier = 1\n",
	} {
		if !strings.Contains(s3, want) {
			t.Errorf("consul-cluster-3 hcl lacks %q:\n%s", want, s3)
		}
	}
	cl := consulClusterHCL(&c, consulClusterClient)
	for _, want := range []string{"server = false\n", "http     = 28740\n", "serf_wan = -1\n", `retry_join = ["127.0.0.1:28712"`} {
		if !strings.Contains(cl, want) {
			t.Errorf("consul-cluster-client hcl lacks %q:\n%s", want, cl)
		}
	}
	if strings.Contains(cl, "bootstrap_expect") {
		t.Errorf("the client agent must not bootstrap:\n%s", cl)
	}
	r5 := redisClusterConf(&c, 5)
	for _, want := range []string{"port 27105\n", "cluster-port 27115\n", "cluster-enabled yes\n",
		"dir /s/redis-cluster-5/data\n", "cluster-config-file nodes.conf\n", "appendonly yes\n"} {
		if !strings.Contains(r5, want) {
			t.Errorf("redis-cluster-5 redis.conf lacks %q:\n%s", want, r5)
		}
	}
	if got := redisClusterAddrs(&c); got != "127.0.0.1:27101,127.0.0.1:27102,127.0.0.1:27103,127.0.0.1:27104,127.0.0.1:27105,127.0.0.1:27106" {
		t.Errorf("redis cluster addrs %s", got)
	}
	// every port of every node is distinct
	seen := map[int]string{}
	for _, s := range clusterServers() {
		for _, p := range s.ports(&c) {
			if other, dup := seen[p]; dup {
				t.Errorf("port %d used by %s and %s", p, other, s.name)
			}
			seen[p] = s.name
		}
	}
}

func TestClusterBasePortsAreChecked(t *testing.T) {
	_, err := ConfigFrom(envOf(map[string]string{"HGP_MW_ROOT": "/r", "HGP_MW_KAFKA_CLUSTER_PORT": "65530",
		"HGP_MW_CONSUL_CLUSTER_PORT": "x"}))
	if err == nil || !strings.Contains(err.Error(), "HGP_MW_KAFKA_CLUSTER_PORT=65530: the cluster needs the 20 ports above it") ||
		!strings.Contains(err.Error(), `HGP_MW_CONSUL_CLUSTER_PORT="x": not a port`) {
		t.Fatalf("error %v", err)
	}
}
