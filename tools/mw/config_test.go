package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigDefaultsAreTheScriptsPorts(t *testing.T) {
	c, err := ConfigFrom(envOf(map[string]string{"HGP_MW_ROOT": "/src/hgp", "HOME": "/home/u"}))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Root: "/src/hgp", Run: "/src/hgp/.run", Cache: "/home/u/.cache/highgopress",
		RedisPort: 16379, MariaDBPort: 13306, KafkaPort: 19092, KafkaControllerPort: 19093,
		ConsulHTTPPort: 18500, ConsulDNSPort: 18600, ConsulServerPort: 18300, ConsulSerfLANPort: 18301,
		ConsulSerfWANPort: 18302, ConsulGRPCPort: 18502, PrometheusPort: 19090,
		JaegerPort: 14318, JaegerQueryPort: 16686, JaegerBin: "/home/u/.cache/highgopress/bin/jaeger",
		KafkaClusterPort: 19200, ConsulClusterPort: 18700, RedisClusterPort: 17100,
		KafkaVersion: "4.4.0", KafkaHome: "/home/u/.cache/highgopress/kafka-4.4.0",
		KafkaHeap: []string{"-Xms256m", "-Xmx512m"}, ConsulBin: "/home/u/.cache/highgopress/bin/consul",
	}
	if got, w := strings.Join(c.KafkaHeap, " "), strings.Join(want.KafkaHeap, " "); got != w {
		t.Errorf("KafkaHeap = %q, want %q", got, w)
	}
	if got := strings.Join(c.KafkaClusterHeap, " "); got != "-Xms256m -Xmx320m" {
		t.Errorf("KafkaClusterHeap = %q", got)
	}
	c.KafkaHeap, want.KafkaHeap, c.KafkaClusterHeap = nil, nil, nil
	if !reflect.DeepEqual(c, want) {
		t.Errorf("ConfigFrom = %+v\nwant %+v", c, want)
	}
}

func TestConfigOverrides(t *testing.T) {
	c, err := ConfigFrom(envOf(map[string]string{
		"HGP_MW_ROOT": "/r", "HGP_MW_RUN": "/tmp/x", "XDG_CACHE_HOME": "/xdg", "HOME": "/home/u",
		"HGP_MW_REDIS_PORT": "26379", "HGP_MW_KAFKA_PORT": " 29092 ", "HGP_MW_CONSUL_GRPC_PORT": "28502",
		"HGP_MW_KAFKA_VERSION": "4.3.0", "HGP_MW_KAFKA_HEAP": "-Xmx1g", "HGP_MW_START_TIMEOUT": "2.5",
		"HGP_MW_STOP_TIMEOUT": "7", "HGP_MW_REDIS_DATA_DIR": "ignored",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Run != "/tmp/x" || c.Cache != "/xdg/highgopress" || c.KafkaHome != "/xdg/highgopress/kafka-4.3.0" {
		t.Errorf("dirs: run %s cache %s kafka %s", c.Run, c.Cache, c.KafkaHome)
	}
	if c.RedisPort != 26379 || c.KafkaPort != 29092 || c.ConsulGRPCPort != 28502 || c.MariaDBPort != 13306 {
		t.Errorf("ports: %+v", c)
	}
	if strings.Join(c.KafkaHeap, " ") != "-Xmx1g" || c.StartTimeout != 2500*time.Millisecond || c.StopTimeout != 7*time.Second {
		t.Errorf("heap %q start %s stop %s", c.KafkaHeap, c.StartTimeout, c.StopTimeout)
	}
	if c.Script() != "/r/scripts/mw.sh" || c.PIDFile("kafka") != "/tmp/x/kafka/kafka.pid" || c.LogFile("redis") != "/tmp/x/redis/redis.log" {
		t.Errorf("paths: %s %s %s", c.Script(), c.PIDFile("kafka"), c.LogFile("redis"))
	}
}

func TestConfigNamesEveryBadVariable(t *testing.T) {
	_, err := ConfigFrom(envOf(map[string]string{
		"HGP_MW_ROOT": "/r", "HGP_MW_REDIS_PORT": "abc", "HGP_MW_KAFKA_PORT": "70000", "HGP_MW_STOP_TIMEOUT": "-1",
	}))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`HGP_MW_REDIS_PORT="abc": not a port`, `HGP_MW_KAFKA_PORT="70000": not a port`,
		`HGP_MW_STOP_TIMEOUT="-1": not a positive number of seconds`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestConfigFindsTheCheckoutWithoutRoot(t *testing.T) {
	c, err := ConfigFrom(envOf(map[string]string{}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(c.Root, "scripts", "mw.sh")); err != nil {
		t.Errorf("root %s has no scripts/mw.sh: %v", c.Root, err)
	}
}

func TestMariadbSocketFallsBackToTmpForLongPaths(t *testing.T) {
	short := &Config{Run: "/work/main/.run"}
	if got := mariadbSocket(short); got != "/work/main/.run/mariadb/mariadbd.sock" {
		t.Errorf("short: %s", got)
	}
	// the name the script gave: `echo "$RUN" | sha256sum | cut -c1-12`
	long := &Config{Run: "/" + strings.Repeat("d", 90) + "/.run"}
	if got, want := mariadbSocket(long), "/tmp/hgp-mariadb-5dd69e565012.sock"; got != want {
		t.Errorf("long: %s, want %s", got, want)
	}
}

func TestExpandNames(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
		err  string
	}{
		{args: []string{"kafka", "redis", "kafka"}, want: "kafka redis"},
		{args: []string{"redis", "all"}, want: "redis mariadb kafka consul prometheus jaeger " +
			"kafka-cluster-1 kafka-cluster-2 kafka-cluster-3 consul-cluster-1 consul-cluster-2 consul-cluster-3 consul-cluster-client " +
			"redis-cluster-1 redis-cluster-2 redis-cluster-3 redis-cluster-4 redis-cluster-5 redis-cluster-6"},
		{args: nil, err: "name at least one server (known: redis mariadb kafka consul prometheus jaeger kafka-cluster consul-cluster redis-cluster or all)"},
		{args: []string{"redis", "postgres"}, err: "unknown server 'postgres' (known: redis mariadb kafka consul prometheus jaeger kafka-cluster consul-cluster redis-cluster or all)"},
	} {
		list, err := expandNames(tc.args)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%v: error %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || namesOf(list) != tc.want {
			t.Errorf("%v: %q %v, want %q", tc.args, namesOf(list), err, tc.want)
		}
	}
}

func TestGeneratedConfigsUseThePorts(t *testing.T) {
	c, err := ConfigFrom(envOf(map[string]string{"HGP_MW_ROOT": "/r", "HGP_MW_RUN": "/s",
		"HGP_MW_KAFKA_PORT": "29092", "HGP_MW_KAFKA_CONTROLLER_PORT": "29093", "HGP_MW_CONSUL_DNS_PORT": "28600"}))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ text, want string }{
		{redisConf(&c), "port 16379\n"},
		{redisConf(&c), "dir /s/redis/data\n"},
		{mariadbConf(&c), "socket = /s/mariadb/mariadbd.sock\nport = 13306\nuser = root\n"},
		{kafkaServerProperties(&c), "listeners=PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093\n"},
		{kafkaServerProperties(&c), "controller.quorum.bootstrap.servers=127.0.0.1:29093\n"},
		{kafkaLog4j2("/s/kafka"), "appender.file.filePattern = /s/kafka/logs/server.log.%i\n"},
		{consulHCL(&c), "  dns      = 28600\n"},
	} {
		if !strings.Contains(tc.text, tc.want) {
			t.Errorf("config lacks %q:\n%s", tc.want, tc.text)
		}
	}
}
