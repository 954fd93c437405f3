package route_test

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	analyticsv1 "github.com/highgopress/highgopress/gen/highgopress/analytics/v1"
	"github.com/highgopress/highgopress/gen/highgopress/analytics/v1/analyticsv1connect"
	counterv1 "github.com/highgopress/highgopress/gen/highgopress/counter/v1"
	"github.com/highgopress/highgopress/gen/highgopress/counter/v1/counterv1connect"
	"github.com/highgopress/highgopress/services/gateway/route"
)

// TestDefaultCoversTheAPI: every method of the public services is routed
// to its service's backend, and exactly the methods declared without side
// effects, and the server streams (watches), are reads.
func TestDefaultCoversTheAPI(t *testing.T) {
	table := route.Default()
	if _, err := route.New(table.Routes()...); err != nil {
		t.Fatalf("default table is invalid: %v", err)
	}
	files := map[string]protoreflect.FileDescriptor{
		route.CounterBackend:   counterv1.File_highgopress_counter_v1_counter_proto,
		route.AnalyticsBackend: analyticsv1.File_highgopress_analytics_v1_analytics_proto,
	}
	n := 0
	for backend, file := range files {
		services := file.Services()
		for i := 0; i < services.Len(); i++ {
			svc := services.Get(i)
			for j := 0; j < svc.Methods().Len(); j++ {
				m := svc.Methods().Get(j)
				n++
				path := "/" + string(svc.FullName()) + "/" + string(m.Name())
				r, ok := table.Lookup(path)
				if !ok {
					t.Errorf("%s is not routed", path)
					continue
				}
				streaming := m.IsStreamingClient() || m.IsStreamingServer()
				want := route.Write
				if readOnly(m) || (m.IsStreamingServer() && !m.IsStreamingClient()) {
					want = route.Read
				}
				if r.Class != want || r.Backend != backend || r.Service() != string(svc.FullName()) || r.Streaming != streaming {
					t.Errorf("%s: %+v, want class %v on %s, streaming %v", path, r, want, backend, streaming)
				}
			}
		}
	}
	if len(table.Routes()) != n {
		t.Errorf("table has %d routes, API has %d methods", len(table.Routes()), n)
	}
	got := table.Services()
	want := []string{analyticsv1connect.AnalyticsServiceName, counterv1connect.CounterServiceName, counterv1connect.FollowServiceName}
	if !slices.Equal(got, want) {
		t.Errorf("Services() = %v; want %v", got, want)
	}
}

func readOnly(m protoreflect.MethodDescriptor) bool {
	opts, ok := m.Options().(*descriptorpb.MethodOptions)
	return ok && opts.GetIdempotencyLevel() == descriptorpb.MethodOptions_NO_SIDE_EFFECTS
}

func TestNewRejects(t *testing.T) {
	ok := route.Route{Procedure: "/a.v1.S/M", Backend: "b", Class: route.Read}
	cases := map[string][]route.Route{
		"no slash":   {{Procedure: "a.v1.S/M", Backend: "b", Class: route.Read}},
		"no method":  {{Procedure: "/a.v1.S/", Backend: "b", Class: route.Read}},
		"deep":       {{Procedure: "/a.v1.S/M/x", Backend: "b", Class: route.Read}},
		"no backend": {{Procedure: "/a.v1.S/M", Class: route.Read}},
		"no class":   {{Procedure: "/a.v1.S/M", Backend: "b"}},
		"duplicate":  {ok, ok},
	}
	for name, rs := range cases {
		if _, err := route.New(rs...); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	tbl, err := route.New(ok)
	if err != nil {
		t.Fatal(err)
	}
	if r, found := tbl.Lookup("/a.v1.S/M"); !found || r != ok {
		t.Fatalf("Lookup = %+v, %v", r, found)
	}
	if _, found := tbl.Lookup("/a.v1.S/m"); found {
		t.Fatal("lookup must be exact")
	}
	if route.Read.String() != "read" || route.Write.String() != "write" {
		t.Fatal("Class.String")
	}
}
