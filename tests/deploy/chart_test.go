package deploy

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
)

// The service components of the chart; every one must be a directory
// services/<name>/cmd/<name> once its code exists (see TestServiceBinaries).
var components = []string{"gateway", "counter", "consumer", "analytics"}

const release = "hgp"

func full(component string) string { return release + "-highgopress-" + component }

func TestLintStrict(t *testing.T) {
	t0 := time.Now()
	for name, vals := range map[string]map[string]any{
		"default":    {},
		"production": readValues(t, productionValuesFile(t)),
	} {
		l := action.NewLint()
		l.Strict = true
		l.Namespace = "highgopress"
		res := l.Run([]string{chartDir(t)}, vals)
		for _, m := range res.Messages {
			t.Logf("lint %s: %s", name, m)
		}
		if len(res.Errors) > 0 {
			t.Errorf("helm lint --strict with %s values: %v", name, res.Errors)
		}
	}
	t.Logf("phase lint: %s", time.Since(t0).Round(time.Millisecond))
}

func TestRenderDefaultValues(t *testing.T) {
	t0 := time.Now()
	r, err := render(t, map[string]any{})
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	t.Logf("%d objects rendered and decoded strictly in %s", len(r.docs), time.Since(t0).Round(time.Millisecond))
	checkServices(t, r, 1)
	checkPodSecurity(t, r)
	checkNetworkPolicies(t, r, true)

	// demo middleware as StatefulSets with volumes
	for _, mw := range []string{"redis", "kafka", "mysql", "consul"} {
		d, ok := r.named("StatefulSet", full(mw))
		if !ok {
			t.Errorf("no StatefulSet %s", full(mw))
			continue
		}
		ss := d.obj.(*appsv1.StatefulSet)
		if len(ss.Spec.VolumeClaimTemplates) != 1 {
			t.Errorf("StatefulSet %s: want one volume claim template, got %d", ss.Name, len(ss.Spec.VolumeClaimTemplates))
		}
		if _, ok := r.named("Service", full(mw)); !ok {
			t.Errorf("no Service %s", full(mw))
		}
	}
	redis, _ := r.named("StatefulSet", full("redis"))
	if args := strings.Join(redis.obj.(*appsv1.StatefulSet).Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "--appendonly yes") {
		t.Errorf("redis runs without AOF: %s", args)
	}
	kafkaCM, ok := r.named("ConfigMap", full("kafka"))
	if !ok || !strings.Contains(kafkaCM.obj.(*corev1.ConfigMap).Data["server.properties"], "process.roles=broker,controller") {
		t.Errorf("kafka is not configured for KRaft (ConfigMap %s)", full("kafka"))
	}

	// generated secrets: present, strong, never in clear text anywhere else
	sd, ok := r.named("Secret", release+"-highgopress-secrets")
	if !ok {
		t.Fatal("no generated Secret")
	}
	sec := sd.obj.(*corev1.Secret)
	for _, k := range []string{"identity-secret", "jwt-hs256-secret", "mysql-password", "mysql-root-password", "redis-password"} {
		v := sec.Data[k]
		if len(v) < 32 {
			t.Errorf("generated %s has %d bytes, want >= 32", k, len(v))
		}
		for _, d := range r.docs {
			if d.gvk.Kind != "Secret" && strings.Contains(string(d.raw), string(v)) {
				t.Errorf("%s of the Secret appears in clear text in %s %s", k, d.gvk.Kind, d.name)
			}
			if d.gvk.Kind != "Secret" && strings.Contains(string(d.raw), base64.StdEncoding.EncodeToString(v)) {
				t.Errorf("%s of the Secret appears in %s %s", k, d.gvk.Kind, d.name)
			}
		}
		if strings.Contains(r.notes, string(v)) {
			t.Errorf("NOTES.txt shows %s in clear text", k)
		}
	}
	if sec.Annotations["helm.sh/resource-policy"] != "keep" {
		t.Error("the generated Secret is not kept (helm.sh/resource-policy: keep)")
	}

	// migrations: a hook Job running `consumer migrate`, after install with the in-cluster MariaDB
	job := hookJob(t, r)
	if job.hook != "post-install,pre-upgrade" {
		t.Errorf("migration Job hook events %q, want post-install,pre-upgrade with the in-cluster MariaDB", job.hook)
	}
	// helm test pod
	if len(r.kind("Pod")) != 1 || r.kind("Pod")[0].hook != "test" {
		t.Errorf("want one helm test Pod, got %d", len(r.kind("Pod")))
	}
	for _, want := range []string{"port-forward svc/" + full("gateway"), "devtoken", "helm test " + release} {
		if !strings.Contains(r.notes, want) {
			t.Errorf("NOTES.txt does not say %q:\n%s", want, r.notes)
		}
	}
	if len(r.kind("ServiceMonitor")) != 0 {
		t.Error("ServiceMonitor rendered by default")
	}
}

func TestRenderProductionValues(t *testing.T) {
	r, err := render(t, readValues(t, productionValuesFile(t)))
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	checkServices(t, r, 3)
	checkPodSecurity(t, r)
	checkNetworkPolicies(t, r, false)
	if n := len(r.kind("StatefulSet")); n != 0 {
		t.Errorf("external middleware: %d StatefulSets rendered, want none", n)
	}
	if n := len(r.kind("Secret")); n != 0 {
		t.Errorf("production mode generated %d Secrets, want none (existingSecret)", n)
	}
	if job := hookJob(t, r); job.hook != "pre-install,pre-upgrade" {
		t.Errorf("migration Job hook events %q, want pre-install,pre-upgrade with an external MySQL", job.hook)
	}
	if len(r.kind("ServiceMonitor")) != 1 {
		t.Errorf("want one ServiceMonitor, got %d", len(r.kind("ServiceMonitor")))
	}
	gw, _ := r.named("Deployment", full("gateway"))
	env := envOf(gw.obj.(*appsv1.Deployment))
	for k, want := range map[string]string{
		"HGP_REDIS_ADDR":    "redis.prod.internal:6379",
		"HGP_KAFKA_BROKERS": "kafka-0.prod.internal:9092,kafka-1.prod.internal:9092,kafka-2.prod.internal:9092",
		"HGP_CONSUL_ADDR":   "http://consul.prod.internal:8500",
	} {
		if env[k] != want {
			t.Errorf("gateway %s = %q, want %q", k, env[k], want)
		}
	}
	ctr, _ := r.named("Deployment", full("counter"))
	if dsn := envOf(ctr.obj.(*appsv1.Deployment))["HGP_MYSQL_DSN"]; !strings.HasPrefix(dsn, "highgopress:$(MYSQL_PASSWORD)@tcp(mysql.prod.internal:3306)/highgopress?") {
		t.Errorf("counter HGP_MYSQL_DSN = %q", dsn)
	}
}

// TestDashboardsHookPoint: with dashboards.enabled every dashboards/*.json of
// the chart becomes a ConfigMap labelled for the Grafana sidecar (the folder
// may still be empty: then none).
func TestDashboardsHookPoint(t *testing.T) {
	r, err := render(t, map[string]any{"dashboards": map[string]any{"enabled": true}})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range r.kind("ConfigMap") {
		cm := d.obj.(*corev1.ConfigMap)
		if cm.Labels["app.kubernetes.io/component"] != "dashboards" {
			continue
		}
		if cm.Labels["grafana_dashboard"] != "1" {
			t.Errorf("dashboard ConfigMap %s lacks grafana_dashboard=1", cm.Name)
		}
	}
	off, err := render(t, map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range off.kind("ConfigMap") {
		if d.obj.(*corev1.ConfigMap).Labels["grafana_dashboard"] != "" {
			t.Errorf("dashboard ConfigMap %s rendered while dashboards.enabled=false", d.name)
		}
	}
}

// TestBadValuesRefused: a wrong type, an unknown key and a production
// install without its secret each fail, naming the value.
func TestBadValuesRefused(t *testing.T) {
	for _, c := range badValues {
		t.Run(c.name, func(t *testing.T) {
			_, err := render(t, c.vals)
			if err == nil {
				t.Fatalf("values %v rendered, want an error naming %q", c.vals, c.mention)
			}
			if !strings.Contains(err.Error(), c.mention) {
				t.Fatalf("error does not name %q: %v", c.mention, err)
			}
		})
	}
}

var badValues = []struct {
	name    string
	vals    map[string]any
	set     []string // the same values as helm --set flags
	mention string
}{
	{"wrong type", map[string]any{"components": map[string]any{"gateway": map[string]any{"replicas": "three"}}},
		[]string{"components.gateway.replicas=three"}, "/components/gateway/replicas"},
	{"unknown top-level key", map[string]any{"replicaCount": 3}, []string{"replicaCount=3"}, "replicaCount"},
	{"misspelled nested key", map[string]any{"redis": map[string]any{"enable": false}}, []string{"redis.enable=false"}, "enable"},
	{"production without secret", map[string]any{"mode": "production"}, []string{"mode=production"}, "secrets.existingSecret"},
	{"external redis without address", map[string]any{"redis": map[string]any{"enabled": false}}, []string{"redis.enabled=false"}, "redis.external.addr"},
}

type hookDoc struct {
	job  *batchv1.Job
	hook string
}

func hookJob(t *testing.T, r *rendered) hookDoc {
	t.Helper()
	jobs := r.kind("Job")
	if len(jobs) != 1 {
		t.Fatalf("want one migration Job, got %d", len(jobs))
	}
	j := jobs[0].obj.(*batchv1.Job)
	c := j.Spec.Template.Spec.Containers[0]
	if !slices.Equal(c.Args, []string{"migrate"}) || !strings.HasSuffix(c.Image, "/consumer:"+imageTag(c.Image)) {
		t.Errorf("migration Job runs %s %v, want the consumer image with `migrate`", c.Image, c.Args)
	}
	return hookDoc{job: j, hook: jobs[0].hook}
}

func imageTag(image string) string { return image[strings.LastIndex(image, ":")+1:] }

func envOf(d *appsv1.Deployment) map[string]string {
	out := map[string]string{}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		out[e.Name] = e.Value
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			out[e.Name] = "secret:" + e.ValueFrom.SecretKeyRef.Key
		}
	}
	return out
}

// checkServices checks every service component's Deployment, Service,
// ServiceAccount, PDB and (gateway, counter) HPA.
func checkServices(t *testing.T, r *rendered, replicas int32) {
	t.Helper()
	for _, c := range components {
		d, ok := r.named("Deployment", full(c))
		if !ok {
			t.Errorf("no Deployment %s", full(c))
			continue
		}
		dep := d.obj.(*appsv1.Deployment)
		spec := dep.Spec.Template.Spec
		ctr := spec.Containers[0]
		hpa := c == "gateway" || c == "counter"
		switch {
		case hpa && dep.Spec.Replicas != nil:
			t.Errorf("%s: replicas set while an HPA scales it", c)
		case !hpa && (dep.Spec.Replicas == nil || *dep.Spec.Replicas != replicas):
			t.Errorf("%s: replicas %v, want %d", c, dep.Spec.Replicas, replicas)
		}
		if ctr.Resources.Requests.Cpu().IsZero() || ctr.Resources.Requests.Memory().IsZero() || ctr.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: resources incomplete: %+v", c, ctr.Resources)
		}
		for name, p := range map[string]*corev1.Probe{"readiness": ctr.ReadinessProbe, "liveness": ctr.LivenessProbe, "startup": ctr.StartupProbe} {
			if p == nil || p.GRPC == nil || p.GRPC.Port != ctr.Ports[0].ContainerPort {
				t.Errorf("%s: %s probe is not a gRPC health probe on the main port: %+v", c, name, p)
			}
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s: pod automounts a service account token", c)
		}
		sa, ok := r.named("ServiceAccount", spec.ServiceAccountName)
		if !ok {
			t.Errorf("%s: ServiceAccount %q not rendered", c, spec.ServiceAccountName)
		} else if am := sa.obj.(*corev1.ServiceAccount).AutomountServiceAccountToken; am == nil || *am {
			t.Errorf("%s: ServiceAccount automounts its token", c)
		}
		if len(spec.TopologySpreadConstraints) == 0 {
			t.Errorf("%s: no topology spread constraints", c)
		}
		// graceful termination: preStop sleep + the server's 10 s drain + margin
		if ctr.Lifecycle == nil || ctr.Lifecycle.PreStop == nil || ctr.Lifecycle.PreStop.Sleep == nil {
			t.Errorf("%s: no preStop sleep", c)
		} else if g, want := *spec.TerminationGracePeriodSeconds, ctr.Lifecycle.PreStop.Sleep.Seconds+10+5; g != want {
			t.Errorf("%s: terminationGracePeriodSeconds %d, want %d (preStop + 10 s shutdown + 5)", c, g, want)
		}
		env := envOf(dep)
		for _, k := range append(requiredEnv[c], "HGP_METRICS_ADDR", "HGP_LOG_LEVEL") {
			if _, ok := env[k]; !ok {
				t.Errorf("%s: env %s not set", c, k)
			}
		}
		for k, v := range env {
			if strings.Contains(strings.ToLower(k), "secret") || strings.Contains(strings.ToLower(k), "password") {
				if !strings.HasPrefix(v, "secret:") {
					t.Errorf("%s: %s is not read from a Secret", c, k)
				}
			}
		}
		if _, ok := r.named("Service", full(c)); !ok {
			t.Errorf("no Service %s", full(c))
		}
		if p, ok := r.named("PodDisruptionBudget", full(c)); !ok {
			t.Errorf("no PodDisruptionBudget %s", full(c))
		} else if sel := p.obj.(*policyv1.PodDisruptionBudget).Spec.Selector; sel == nil || sel.MatchLabels["app.kubernetes.io/component"] != c {
			t.Errorf("PDB %s selects %v", full(c), sel)
		}
		h, ok := r.named("HorizontalPodAutoscaler", full(c))
		if ok != hpa {
			t.Errorf("%s: HPA rendered=%v, want %v", c, ok, hpa)
		}
		if ok {
			if h := h.obj.(*autoscalingv2.HorizontalPodAutoscaler); h.Spec.ScaleTargetRef.Name != full(c) || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
				t.Errorf("HPA %s: %+v", full(c), h.Spec)
			}
		}
	}
}

var requiredEnv = map[string][]string{
	"gateway":   {"HGP_GATEWAY_ADDR", "HGP_IDENTITY_SECRET", "HGP_JWT_HS256_SECRET", "HGP_JWT_ISSUER", "HGP_JWT_AUDIENCE", "HGP_REDIS_ADDR", "HGP_KAFKA_BROKERS", "HGP_CONSUL_ADDR", "HGP_GATEWAY_CONSUL_TAG", "HGP_ADVERTISE_HOST"},
	"counter":   {"HGP_COUNTER_ADDR", "HGP_IDENTITY_SECRET", "HGP_REDIS_ADDR", "HGP_KAFKA_BROKERS", "HGP_MYSQL_DSN", "HGP_CONSUL_ADDR", "HGP_ADVERTISE_HOST"},
	"consumer":  {"HGP_CONSUMER_ADDR", "HGP_KAFKA_BROKERS", "HGP_MYSQL_DSN", "HGP_CONSUMER_MIGRATE", "HGP_CONSUL_ADDR"},
	"analytics": {"HGP_ANALYTICS_ADDR", "HGP_REDIS_ADDR", "HGP_KAFKA_BROKERS", "HGP_CONSUL_ADDR"},
}

// checkPodSecurity evaluates every pod template with the Pod Security
// Admission library at level restricted, and checks the settings the chart
// promises beyond it (read-only root file system).
func checkPodSecurity(t *testing.T, r *rendered) {
	t.Helper()
	specs := r.podSpecs()
	if len(specs) < len(components) {
		t.Fatalf("only %d pod specs rendered", len(specs))
	}
	for key, tpl := range specs {
		if v := restrictedViolations(t, tpl); len(v) > 0 {
			t.Errorf("%s violates Pod Security restricted: %s", key, strings.Join(v, "; "))
		}
		for _, c := range append(slices.Clone(tpl.Spec.InitContainers), tpl.Spec.Containers...) {
			if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
				t.Errorf("%s container %s: root file system is writable", key, c.Name)
			}
		}
	}
}

// checkNetworkPolicies: gateway open, counter/analytics only from the gateway
// (and Consul's health checks), middleware only from its users.
func checkNetworkPolicies(t *testing.T, r *rendered, demo bool) {
	t.Helper()
	peers := func(name string) (open bool, from []string) {
		d, ok := r.named("NetworkPolicy", full(name))
		if !ok {
			t.Errorf("no NetworkPolicy %s", full(name))
			return false, nil
		}
		np := d.obj.(*networkingv1.NetworkPolicy)
		if np.Spec.PodSelector.MatchLabels["app.kubernetes.io/component"] != name {
			t.Errorf("NetworkPolicy %s selects %v", np.Name, np.Spec.PodSelector)
		}
		for _, rule := range np.Spec.Ingress {
			if len(rule.Ports) == 1 && rule.Ports[0].Port != nil && rule.Ports[0].Port.String() == "metrics" {
				continue
			}
			if len(rule.From) == 0 {
				open = true
			}
			for _, p := range rule.From {
				switch {
				case p.PodSelector != nil && p.NamespaceSelector == nil:
					from = append(from, p.PodSelector.MatchLabels["app.kubernetes.io/component"])
				default:
					from = append(from, fmt.Sprintf("peer%v", p))
				}
			}
		}
		slices.Sort(from)
		return open, from
	}
	if open, _ := peers("gateway"); !open {
		t.Error("the gateway is not reachable from outside the release")
	}
	consul := []string{}
	if demo {
		consul = []string{"consul"}
	}
	for _, c := range []string{"counter", "analytics"} {
		open, from := peers(c)
		want := slices.Sorted(slices.Values(append([]string{"gateway"}, consul...)))
		if !demo {
			want = append(want, "peer{nil nil &IPBlock{CIDR:10.20.0.0/16,Except:[],}}")
		}
		if open || !slices.Equal(from, want) {
			t.Errorf("%s reachable from open=%v %v, want only %v", c, open, from, want)
		}
	}
	if !demo {
		return
	}
	for mw, want := range map[string][]string{
		"redis":  {"analytics", "counter", "gateway"},
		"kafka":  {"analytics", "consumer", "counter", "gateway"},
		"mysql":  {"consumer", "counter", "migrations"},
		"consul": {"analytics", "consumer", "counter", "gateway"},
	} {
		if open, from := peers(mw); open || !slices.Equal(from, want) {
			t.Errorf("%s reachable from open=%v %v, want only %v", mw, open, from, want)
		}
	}
}
