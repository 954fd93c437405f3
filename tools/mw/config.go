package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Host is the loopback address every server binds to.
const Host = "127.0.0.1"

// MySQL account and database created on every mariadb start.
const (
	mysqlUser     = "hgp"
	mysqlPassword = "hgp"
	mysqlDatabase = "highgopress"
)

// Config is where the servers live and which ports they use. ConfigFrom
// reads it from the environment (the HGP_MW_* variables of scripts/mw.sh);
// an empty variable means its default, as in the script.
type Config struct {
	Root  string // HGP_MW_ROOT: the checkout (scripts/mw.sh sets it)
	Run   string // HGP_MW_RUN: state dir, default <root>/.run
	Cache string // HGP_MW_CACHE: installs shared by every clone, default ~/.cache/highgopress

	RedisPort           int // HGP_MW_REDIS_PORT (16379)
	MariaDBPort         int // HGP_MW_MARIADB_PORT (13306)
	KafkaPort           int // HGP_MW_KAFKA_PORT (19092)
	KafkaControllerPort int // HGP_MW_KAFKA_CONTROLLER_PORT (19093)
	ConsulHTTPPort      int // HGP_MW_CONSUL_HTTP_PORT (18500)
	ConsulDNSPort       int // HGP_MW_CONSUL_DNS_PORT (18600)
	ConsulServerPort    int // HGP_MW_CONSUL_SERVER_PORT (18300)
	ConsulSerfLANPort   int // HGP_MW_CONSUL_SERF_LAN_PORT (18301)
	ConsulSerfWANPort   int // HGP_MW_CONSUL_SERF_WAN_PORT (18302)
	ConsulGRPCPort      int // HGP_MW_CONSUL_GRPC_PORT (18502)
	PrometheusPort      int // HGP_MW_PROMETHEUS_PORT (19090)
	JaegerPort          int // HGP_MW_JAEGER_PORT (14318, OTLP/HTTP; OTLP/gRPC one below)
	JaegerQueryPort     int // HGP_MW_JAEGER_QUERY_PORT (16686; gRPC one below, health +3)
	// KafkaClusterPort is kafka-cluster's base port (19200): node i listens
	// on +i (broker) and +10+i (controller).
	KafkaClusterPort int // HGP_MW_KAFKA_CLUSTER_PORT
	// ConsulClusterPort is consul-cluster's base port (18700): agent j
	// (servers 1-3, client 4) uses +10j .. +10j+3 (HTTP, RPC, serf LAN, WAN).
	ConsulClusterPort int // HGP_MW_CONSUL_CLUSTER_PORT
	// RedisClusterPort is redis-cluster's base port (17100): node i (1-6)
	// listens on +i (clients) and +10+i (cluster bus).
	RedisClusterPort int // HGP_MW_REDIS_CLUSTER_PORT

	KafkaVersion string   // HGP_MW_KAFKA_VERSION (4.4.0)
	KafkaHome    string   // <cache>/kafka-<version> (jars in libs/, installed by scripts/mw.sh)
	KafkaHeap    []string // HGP_MW_KAFKA_HEAP (-Xms256m -Xmx512m)
	// KafkaClusterHeap is each kafka-cluster broker's (-Xms256m -Xmx320m).
	KafkaClusterHeap []string // HGP_MW_KAFKA_CLUSTER_HEAP
	ConsulBin        string   // HGP_MW_BIN_CONSUL, default <cache>/bin/consul
	JaegerBin        string   // HGP_MW_BIN_JAEGER, default <cache>/bin/jaeger

	// PrometheusConfig is PROMETHEUS_CONFIG: a prometheus.yml to run
	// instead of the generated one (checked when prometheus is used).
	PrometheusConfig string

	// StartTimeout and StopTimeout (HGP_MW_START_TIMEOUT, HGP_MW_STOP_TIMEOUT,
	// in seconds) replace every server's own deadlines when set.
	StartTimeout, StopTimeout time.Duration
}

// ConfigFrom reads the configuration through getenv (os.Getenv outside
// tests). Every bad value is reported, each naming its variable.
func ConfigFrom(getenv func(string) string) (Config, error) {
	var errs []error
	str := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	port := func(name string, def int) int {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return def
		}
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			errs = append(errs, fmt.Errorf("%s=%q: not a port (1-65535)", name, v))
			return def
		}
		return p
	}
	seconds := func(name string) time.Duration {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return 0
		}
		s, err := strconv.ParseFloat(v, 64)
		if err != nil || s <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q: not a positive number of seconds", name, v))
			return 0
		}
		return time.Duration(s * float64(time.Second))
	}

	c := Config{Root: str("HGP_MW_ROOT", "")}
	if c.Root == "" {
		root, err := findRoot()
		if err != nil {
			errs = append(errs, err)
		}
		c.Root = root
	}
	c.Run = str("HGP_MW_RUN", filepath.Join(c.Root, ".run"))
	cacheHome := str("XDG_CACHE_HOME", filepath.Join(getenv("HOME"), ".cache"))
	c.Cache = str("HGP_MW_CACHE", filepath.Join(cacheHome, "highgopress"))

	c.RedisPort = port("HGP_MW_REDIS_PORT", 16379)
	c.MariaDBPort = port("HGP_MW_MARIADB_PORT", 13306)
	c.KafkaPort = port("HGP_MW_KAFKA_PORT", 19092)
	c.KafkaControllerPort = port("HGP_MW_KAFKA_CONTROLLER_PORT", 19093)
	c.ConsulHTTPPort = port("HGP_MW_CONSUL_HTTP_PORT", 18500)
	c.ConsulDNSPort = port("HGP_MW_CONSUL_DNS_PORT", 18600)
	c.ConsulServerPort = port("HGP_MW_CONSUL_SERVER_PORT", 18300)
	c.ConsulSerfLANPort = port("HGP_MW_CONSUL_SERF_LAN_PORT", 18301)
	c.ConsulSerfWANPort = port("HGP_MW_CONSUL_SERF_WAN_PORT", 18302)
	c.ConsulGRPCPort = port("HGP_MW_CONSUL_GRPC_PORT", 18502)
	c.PrometheusPort = port("HGP_MW_PROMETHEUS_PORT", 19090)
	c.JaegerPort = port("HGP_MW_JAEGER_PORT", 14318)
	c.JaegerQueryPort = port("HGP_MW_JAEGER_QUERY_PORT", 16686)
	c.KafkaClusterPort = port("HGP_MW_KAFKA_CLUSTER_PORT", 19200)
	c.ConsulClusterPort = port("HGP_MW_CONSUL_CLUSTER_PORT", 18700)
	c.RedisClusterPort = port("HGP_MW_REDIS_CLUSTER_PORT", 17100)
	if c.KafkaClusterPort > 65535-20 {
		errs = append(errs, fmt.Errorf("HGP_MW_KAFKA_CLUSTER_PORT=%d: the cluster needs the 20 ports above it", c.KafkaClusterPort))
	}
	if c.RedisClusterPort > 65535-20 {
		errs = append(errs, fmt.Errorf("HGP_MW_REDIS_CLUSTER_PORT=%d: the cluster needs the 20 ports above it", c.RedisClusterPort))
	}
	if c.ConsulClusterPort > 65535-50 {
		errs = append(errs, fmt.Errorf("HGP_MW_CONSUL_CLUSTER_PORT=%d: the cluster needs the 50 ports above it", c.ConsulClusterPort))
	}

	c.KafkaVersion = str("HGP_MW_KAFKA_VERSION", "4.4.0")
	c.KafkaHome = filepath.Join(c.Cache, "kafka-"+c.KafkaVersion)
	c.KafkaHeap = strings.Fields(str("HGP_MW_KAFKA_HEAP", "-Xms256m -Xmx512m"))
	c.KafkaClusterHeap = strings.Fields(str("HGP_MW_KAFKA_CLUSTER_HEAP", "-Xms256m -Xmx320m"))
	c.ConsulBin = str("HGP_MW_BIN_CONSUL", filepath.Join(c.Cache, "bin", "consul"))
	c.JaegerBin = str("HGP_MW_BIN_JAEGER", filepath.Join(c.Cache, "bin", "jaeger"))

	c.PrometheusConfig = str("PROMETHEUS_CONFIG", "")
	c.StartTimeout = seconds("HGP_MW_START_TIMEOUT")
	c.StopTimeout = seconds("HGP_MW_STOP_TIMEOUT")
	return c, errors.Join(errs...)
}

// findRoot is the checkout above the working directory (the directory
// holding scripts/mw.sh), for runs that are not started by the script.
func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("HGP_MW_ROOT is not set and the working directory is unknown: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "scripts", "mw.sh")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("HGP_MW_ROOT is not set and no scripts/mw.sh above %s", dir)
		}
	}
}

// Script is scripts/mw.sh of the checkout (HGP_MW_SCRIPT in the env file).
func (c *Config) Script() string { return filepath.Join(c.Root, "scripts", "mw.sh") }

// Dir is the state directory of one server.
func (c *Config) Dir(name string) string { return filepath.Join(c.Run, name) }

// LogFile is the server's stdout and stderr.
func (c *Config) LogFile(name string) string { return filepath.Join(c.Run, name, name+".log") }

// PIDFile holds "pid starttime" of the server's process.
func (c *Config) PIDFile(name string) string { return filepath.Join(c.Run, name, name+".pid") }

// rel shortens a path under the checkout for messages.
func (c *Config) rel(p string) string {
	if r, ok := strings.CutPrefix(p, c.Root+"/"); ok {
		return r
	}
	return p
}

func hostPort(port int) string { return Host + ":" + strconv.Itoa(port) }
