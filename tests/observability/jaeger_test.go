package observability

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/platform/testenv"
)

type jaegerTraces struct {
	Data []jaegerTrace `json:"data"`
}

type jaegerTrace struct {
	TraceID   string       `json:"traceID"`
	Spans     []jaegerSpan `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

type jaegerSpan struct {
	TraceID       string `json:"traceID"`
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	ProcessID     string `json:"processID"`
	References    []struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
}

func (tr jaegerTrace) service(s jaegerSpan) string { return tr.Processes[s.ProcessID].ServiceName }

// find returns the span of service named op.
func (tr jaegerTrace) find(service, op string) (jaegerSpan, bool) {
	for _, s := range tr.Spans {
		if tr.service(s) == service && s.OperationName == op {
			return s, true
		}
	}
	return jaegerSpan{}, false
}

func (s jaegerSpan) parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" && r.TraceID == s.TraceID {
			return r.SpanID
		}
	}
	return ""
}

func (s jaegerSpan) linksTo(traceID string, spanIDs map[string]bool) bool {
	for _, r := range s.References {
		if r.TraceID == traceID && spanIDs[r.SpanID] && r.RefType == "FOLLOWS_FROM" {
			return true
		}
	}
	return false
}

// TestOneLikeIsOneTrace: with tracing at 1 % (parent-based), a like that
// arrives with a sampled traceparent is traced end to end in a real
// Jaeger: the gateway's server span (child of the caller), the counter's
// server span (child of the gateway's), the Redis script span (child of
// the counter's), the relay's Kafka produce linked to the Redis span that
// wrote the outbox entry, and the consumer's apply linked to it too.
func TestOneLikeIsOneTrace(t *testing.T) {
	otlp := require(t, "HGP_TEST_JAEGER_OTLP_ENDPOINT", "jaeger")
	q := require(t, "HGP_TEST_JAEGER_QUERY_URL", "jaeger")
	s := startStack(t, map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": otlp,
		"OTEL_TRACES_SAMPLER":         "parentbased_traceidratio",
		"OTEL_TRACES_SAMPLER_ARG":     "0.01",
		"OTEL_BSP_SCHEDULE_DELAY":     "100",
		"OTEL_RESOURCE_ATTRIBUTES":    "deployment.environment=test",
	})
	traceID, callerSpan := suffix()+suffix()+"abcdefab", suffix()+"abcd"
	req := as(t, "obs-traced", &counterv1.LikeRequest{Item: &counterv1.ItemRef{Namespace: "obs", Id: "traced-" + suffix()}})
	req.Header().Set("traceparent", "00-"+traceID+"-"+callerSpan+"-01")
	if _, err := s.client(connect.WithProtoJSON()).Like(context.Background(), req); err != nil {
		t.Fatalf("Like: %v", err)
	}
	ctx := context.Background()
	const (
		likeOp = "highgopress.counter.v1.CounterService/Like"
	)
	var tr jaegerTrace
	testenv.EventuallyNoError(t, 30*time.Second, "the like's trace in Jaeger", func() error {
		var got jaegerTraces
		if err := getJSON(ctx, q, "/api/traces/"+traceID, nil, &got); err != nil {
			return err
		}
		if len(got.Data) != 1 {
			return fmt.Errorf("%d traces", len(got.Data))
		}
		tr = got.Data[0]
		for _, want := range [][2]string{{"gateway", likeOp}, {"counter", likeOp}, {"counter", "redis like"}} {
			if _, ok := tr.find(want[0], want[1]); !ok {
				return fmt.Errorf("no %s span %q yet (%d spans)", want[0], want[1], len(tr.Spans))
			}
		}
		return nil
	})
	gw, _ := tr.find("gateway", likeOp)
	ct, _ := tr.find("counter", likeOp)
	if gw.parent() != callerSpan {
		t.Errorf("gateway span's parent %q, want the caller's %s", gw.parent(), callerSpan)
	}
	if ct.parent() != gw.SpanID {
		t.Errorf("counter span's parent %q, want the gateway span %s", ct.parent(), gw.SpanID)
	}
	// A first touch of an item runs the script twice (the first finds the
	// item absent from Redis, it is seeded from MySQL, the second writes):
	// every Redis span is the counter span's child; the one that wrote the
	// outbox entry is what the pipeline links to.
	redis := map[string]bool{}
	for _, sp := range tr.Spans {
		if tr.service(sp) == "counter" && sp.OperationName == "redis like" {
			redis[sp.SpanID] = true
			if sp.parent() != ct.SpanID {
				t.Errorf("Redis span %s's parent %q, want the counter span %s", sp.SpanID, sp.parent(), ct.SpanID)
			}
		}
	}

	// The relay's produce, the consumer's apply and analytics' apply are
	// traces of their own, linked to the Redis span whose traceparent the
	// outbox stored.
	for _, want := range [][2]string{{"counter", "relay produce"}, {"consumer", "consumer apply"}, {"analytics", "analytics apply"}} {
		testenv.EventuallyNoError(t, 30*time.Second, want[0]+" "+want[1]+" linked to the like", func() error {
			var got jaegerTraces
			err := getJSON(ctx, q, "/api/traces", url.Values{
				"service": {want[0]}, "operation": {want[1]}, "limit": {"200"}, "lookback": {"1h"},
			}, &got)
			if err != nil {
				return err
			}
			var ops []string
			for _, other := range got.Data {
				for _, sp := range other.Spans {
					if sp.OperationName == want[1] && sp.linksTo(traceID, redis) {
						if sp.TraceID == traceID {
							return fmt.Errorf("%s is in the like's trace; it should be linked, not a child", want[1])
						}
						return nil
					}
					ops = append(ops, sp.OperationName)
				}
			}
			return fmt.Errorf("no %s span links to a Redis span of %s among %d traces (%s)", want[1], traceID, len(got.Data), strings.Join(ops, ","))
		})
	}
}
