package main

import "strings"

// Clusters are groups of servers of one kind started, stopped and checked
// together (kafka-cluster, consul-cluster, redis-cluster). Each member is a server of its
// own (its pid file, state dir, log and health check), so one node can be
// killed and brought back: `kill9 kafka-cluster:2` (or kafka-cluster-2),
// `start kafka-cluster` (starts what is not running).

// clusterServers are every member of every cluster.
func clusterServers() []*server {
	return append(append(append([]*server{}, kafkaClusterNodes...), consulClusterNodes...), redisClusterNodes...)
}

// clusterNames are the names of the groups, in order.
func clusterNames() []string { return []string{"kafka-cluster", "consul-cluster", "redis-cluster"} }

// clusterMembers resolves a group name ("kafka-cluster": all its members) or
// a member given as "<group>:<n>" ("kafka-cluster:2", "consul-cluster:client").
func clusterMembers(name string) ([]*server, bool) {
	if g, n, ok := strings.Cut(name, ":"); ok {
		s := serverByName(g + "-" + n)
		if s == nil || s.group != g {
			return nil, false
		}
		return []*server{s}, true
	}
	var out []*server
	for _, s := range servers {
		if s.group == name {
			out = append(out, s)
		}
	}
	return out, len(out) > 0
}

// oneServer is the server a name stands for when a command takes exactly
// one (running, logs): a server's name or "<cluster>:<n>".
func oneServer(name string) *server {
	if s := serverByName(name); s != nil {
		return s
	}
	if l, ok := clusterMembers(name); ok && len(l) == 1 && strings.Contains(name, ":") {
		return l[0]
	}
	return nil
}
