package pipeline_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	analyticsv1 "github.com/highgopress/highgopress/gen/highgopress/analytics/v1"
	"github.com/highgopress/highgopress/gen/highgopress/analytics/v1/analyticsv1connect"
	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/platform/events"
	"github.com/highgopress/highgopress/platform/rpctest"
	"github.com/highgopress/highgopress/platform/server"
	"github.com/highgopress/highgopress/platform/testenv"
	"github.com/highgopress/highgopress/platform/testenv/pipetest"
	"github.com/highgopress/highgopress/services/gateway"
	"github.com/highgopress/highgopress/services/gateway/auth"
)

// commands are the service binaries the analytics tests run as processes,
// built once per test binary (removed by TestMain).
var commands = testenv.NewBinaries(
	"github.com/highgopress/highgopress/services/gateway/cmd/gateway",
	"github.com/highgopress/highgopress/services/counter/cmd/counter",
	"github.com/highgopress/highgopress/services/consumer/cmd/consumer",
	"github.com/highgopress/highgopress/services/analytics/cmd/analytics",
)

func TestMain(m *testing.M) {
	code := m.Run()
	commands.Remove()
	os.Exit(code)
}

const (
	stackIdentitySecret = "pipeline-analytics-identity-secret-0123"
	stackJWTSecret      = "pipeline-analytics-jwt-secret-0123456789"
)

// stack is the whole system as processes — gateway, counter (with its
// relay), consumer and analytics — on a private Redis of the test's own
// (the counter's keys and outbox have fixed names), the shared Kafka (the
// test's topics and groups) and MariaDB (the test's database), and the
// shared Consul agent: the counter and analytics register with a tag of
// the test's own and the gateway routes only to instances carrying it.
type stack struct {
	env      *pipetest.Env
	redis    *pipetest.Private
	tag      string
	anGroup  string
	anPrefix string

	gateway, counter, consumer, analytics *testenv.Process

	hc     *http.Client
	tokens sync.Map
	// probes are the calls startStack made through the gateway.
	probes []probe
}

// probe is one call made through the gateway and how it ended.
type probe struct {
	procedure string
	err       error
	took      time.Duration
}

// stackVars are variables added to one service's environment.
type stackVars struct {
	gateway, analytics map[string]string
}

func startStack(t *testing.T, extra stackVars) *stack {
	t.Helper()
	consul := testenv.ConsulAddr(t)
	brokers := testenv.KafkaBrokers(t)
	env := pipetest.NewEnv(t, strings.Split(brokers, ","), testenv.MySQLDSN(t), partitions)
	s := &stack{
		env: env, redis: pipetest.StartPrivate(t, "redis"), tag: "t-" + pipetest.Suffix(),
		anGroup: "hgp-t-an-" + pipetest.Suffix(), anPrefix: "hgp:an:t" + pipetest.Suffix() + ":",
		hc: server.NewH2CClient(),
	}
	t.Cleanup(s.hc.CloseIdleConnections)
	addr := func() string { return "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) }
	with := func(base, more map[string]string) map[string]string {
		for k, v := range more {
			base[k] = v
		}
		return base
	}
	redisVars := map[string]string{"HGP_REDIS_ADDR": s.redis.Addr(), "HGP_LOG_LEVEL": "warn"}
	consulVars := map[string]string{"HGP_CONSUL_ADDR": consul, "HGP_CONSUL_TAGS": s.tag, "HGP_CONSUL_CHECK_INTERVAL": "500ms"}

	ca := addr()
	s.counter = testenv.StartProcess(t, "counter", commands.Path(t, "counter"), ca, with(with(map[string]string{
		"HGP_COUNTER_ADDR": ca, "HGP_IDENTITY_SECRET": stackIdentitySecret,
		"HGP_KAFKA_BROKERS": brokers, "HGP_KAFKA_TOPIC": env.Topic, "HGP_MYSQL_DSN": env.DSN,
	}, redisVars), consulVars))

	cs := addr()
	s.consumer = testenv.StartProcess(t, "consumer", commands.Path(t, "consumer"), cs, map[string]string{
		"HGP_CONSUMER_ADDR": cs, "HGP_KAFKA_BROKERS": brokers, "HGP_KAFKA_TOPIC": env.Topic,
		"HGP_KAFKA_DLQ_TOPIC": env.DLQ, "HGP_KAFKA_GROUP": env.Group, "HGP_MYSQL_DSN": env.DSN,
		"HGP_KAFKA_SESSION_TIMEOUT": "6s", "HGP_LOG_LEVEL": "warn",
	})

	an := addr()
	s.analytics = testenv.StartProcess(t, "analytics", commands.Path(t, "analytics"), an, with(with(with(map[string]string{
		"HGP_ANALYTICS_ADDR": an, "HGP_ANALYTICS_KEY_PREFIX": s.anPrefix, "HGP_ANALYTICS_GROUP": s.anGroup,
		"HGP_KAFKA_BROKERS": brokers, "HGP_KAFKA_TOPIC": env.Topic, "HGP_KAFKA_DLQ_TOPIC": env.DLQ,
		"HGP_KAFKA_SESSION_TIMEOUT": "6s",
	}, redisVars), consulVars), extra.analytics))

	ga := addr()
	s.gateway = testenv.StartProcess(t, "gateway", commands.Path(t, "gateway"), ga, with(with(map[string]string{
		"HGP_GATEWAY_ADDR": ga, "HGP_IDENTITY_SECRET": stackIdentitySecret, "HGP_JWT_HS256_SECRET": stackJWTSecret,
		"HGP_CONSUL_ADDR": consul, "HGP_GATEWAY_CONSUL_TAG": s.tag,
		"HGP_KAFKA_BROKERS": brokers, "HGP_KAFKA_TOPIC": env.Topic,
		// Budgets far above what the tests send, unless a test sets its own.
		"HGP_RATE_WRITE_USER": "10000-S", "HGP_RATE_READ_USER": "100000-S",
		"HGP_RATE_WRITE_IP": "100000-S", "HGP_RATE_READ_IP": "100000-S",
	}, redisVars), extra.gateway))

	// The gateway finds both backends in Consul (health checks passing).
	testenv.EventuallyNoError(t, 60*time.Second, "the gateway routing to the counter and analytics", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		_, err := s.counters().GetCounts(ctx, connect.NewRequest(&counterv1.GetCountsRequest{
			Items: []*counterv1.ItemRef{{Namespace: "probe", Id: "probe"}}}))
		s.probes = append(s.probes, probe{counterv1connect.CounterServiceGetCountsProcedure, err, time.Since(start)})
		if err != nil {
			return fmt.Errorf("counter: %w", err)
		}
		start = time.Now()
		_, err = s.analyticsClient().TopItems(ctx, connect.NewRequest(&analyticsv1.TopItemsRequest{
			Namespace: "probe", Window: analyticsv1.Window_WINDOW_HOUR}))
		s.probes = append(s.probes, probe{analyticsv1connect.AnalyticsServiceTopItemsProcedure, err, time.Since(start)})
		if err != nil {
			return fmt.Errorf("analytics: %w", err)
		}
		return nil
	})
	return s
}

// url is the gateway's base URL.
func (s *stack) url() string { return "http://" + s.gateway.Addr }

func (s *stack) counters(opts ...connect.ClientOption) counterv1connect.CounterServiceClient {
	return counterv1connect.NewCounterServiceClient(s.hc, s.url(), opts...)
}

func (s *stack) analyticsClient(opts ...connect.ClientOption) analyticsv1connect.AnalyticsServiceClient {
	return analyticsv1connect.NewAnalyticsServiceClient(s.hc, s.url(), opts...)
}

// direct is a client of the analytics process itself, bypassing the
// gateway (whose API statistics it therefore does not touch).
func (s *stack) direct() analyticsv1connect.AnalyticsServiceClient {
	return analyticsv1connect.NewAnalyticsServiceClient(s.hc, "http://"+s.analytics.Addr)
}

// token is a bearer token for user, minted as the gateway expects.
func (s *stack) token(t testing.TB, user string) string {
	t.Helper()
	if v, ok := s.tokens.Load(user); ok {
		return v.(string)
	}
	tok, err := auth.Issue([]byte(stackJWTSecret), user, time.Hour, gateway.DefaultIssuer, gateway.DefaultAudience)
	if err != nil {
		t.Fatal(err)
	}
	s.tokens.Store(user, tok)
	return tok
}

// as is a request carrying user's token ("" for none).
func as[T any](t testing.TB, s *stack, user string, msg *T) *connect.Request[T] {
	req := connect.NewRequest(msg)
	if user != "" {
		req.Header().Set("Authorization", "Bearer "+s.token(t, user))
	}
	return req
}

// analyticsLag is how many messages of the test's topic analytics has not
// committed yet.
func (s *stack) analyticsLag(ctx context.Context) (int64, error) {
	return events.GroupLag(ctx, s.env.Brokers, s.anGroup, s.env.Topic)
}

// protocols are rpctest's protocols (connect-json, gRPC, gRPC-Web).
var protocols = rpctest.Protocols

// topAll pages through the whole ranking of ns in window w through the
// gateway, limit entries a page, checking that ranks run 1, 2, … and that
// the order is score descending, then item ascending.
func topAll(ctx context.Context, c analyticsv1connect.AnalyticsServiceClient, ns string, w analyticsv1.Window, limit int32) ([]string, error) {
	var out []string
	token := ""
	for pages := 0; ; pages++ {
		if pages > 1000 {
			return nil, fmt.Errorf("more than 1000 pages")
		}
		resp, err := c.TopItems(ctx, connect.NewRequest(&analyticsv1.TopItemsRequest{Namespace: ns, Window: w, Limit: limit, PageToken: token}))
		if err != nil {
			return nil, err
		}
		items := resp.Msg.GetItems()
		if len(items) > int(limit) {
			return nil, fmt.Errorf("page of %d items, limit %d", len(items), limit)
		}
		for _, it := range items {
			if it.GetRank() != int64(len(out)+1) {
				return nil, fmt.Errorf("item %s has rank %d at position %d", it.GetItemId(), it.GetRank(), len(out)+1)
			}
			out = append(out, it.GetItemId()+"="+strconv.FormatInt(it.GetScore(), 10))
		}
		if token = resp.Msg.GetNextPageToken(); token == "" {
			return out, nil
		}
		if len(items) == 0 {
			return nil, fmt.Errorf("an empty page with a next page token")
		}
	}
}
