package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"
)

// repoRoot is the checkout holding this module (tests/deploy).
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test source")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func chartDir(t testing.TB) string { return filepath.Join(repoRoot(t), "charts", "highgopress") }

func productionValuesFile(t testing.TB) string {
	return filepath.Join(chartDir(t), "ci", "production-values.yaml")
}

// rendered is one `helm template`: every object (manifest, hooks, tests) and the notes.
type rendered struct {
	docs  []doc
	notes string
}

type doc struct {
	source string // template path
	raw    []byte
	gvk    schema.GroupVersionKind
	name   string
	obj    k8sruntime.Object // nil for kinds outside client-go's scheme
	hook   string            // helm.sh/hook annotation of hooks and tests
}

func readValues(t testing.TB, files ...string) map[string]any {
	t.Helper()
	vals := map[string]any{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		vals = loader.MergeMaps(vals, m)
	}
	return vals
}

// render runs the chart through helm's own install action in client-only
// dry-run mode, exactly what `helm template` does.
func render(t testing.TB, vals map[string]any) (*rendered, error) {
	t.Helper()
	ch, err := loader.Load(chartDir(t))
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	inst := action.NewInstall(&action.Configuration{})
	inst.DryRunStrategy = action.DryRunClient
	inst.ReleaseName = "hgp"
	inst.Namespace = "highgopress"
	inst.Replace = true
	kv, err := common.ParseKubeVersion("v1.37.2")
	if err != nil {
		t.Fatal(err)
	}
	inst.KubeVersion = kv
	r, err := inst.Run(ch, vals)
	if err != nil {
		return nil, err
	}
	rel, ok := r.(*releasev1.Release)
	if !ok {
		t.Fatalf("release type %T", r)
	}
	out := &rendered{notes: rel.Info.Notes}
	if err := out.add(rel.Manifest, ""); err != nil {
		t.Fatal(err)
	}
	for _, h := range rel.Hooks {
		if err := out.add(h.Manifest, hookEvents(h)); err != nil {
			t.Fatal(err)
		}
	}
	return out, nil
}

func hookEvents(h *releasev1.Hook) string {
	ev := make([]string, 0, len(h.Events))
	for _, e := range h.Events {
		ev = append(ev, string(e))
	}
	return strings.Join(ev, ",")
}

var strictDecoder = json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
	json.SerializerOptions{Yaml: true, Strict: true})

// add splits a multi-document manifest and decodes every object strictly.
func (r *rendered) add(manifest, hook string) error {
	rd := utilyaml.NewYAMLReader(bufioReader(manifest))
	for {
		b, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("split manifest: %w", err)
		}
		if len(bytes.TrimSpace(stripComments(b))) == 0 {
			continue
		}
		d := doc{raw: b, hook: hook, source: sourceOf(b)}
		var tm metav1.TypeMeta
		var om struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal(b, &tm); err != nil {
			return fmt.Errorf("%s: %w", d.source, err)
		}
		if err := yaml.Unmarshal(b, &om); err != nil {
			return fmt.Errorf("%s: %w", d.source, err)
		}
		d.gvk, d.name = tm.GroupVersionKind(), om.Metadata.Name
		if scheme.Scheme.Recognizes(d.gvk) {
			obj, _, err := strictDecoder.Decode(b, nil, nil)
			if err != nil {
				return fmt.Errorf("%s %s (%s): %w", d.gvk.Kind, d.name, d.source, err)
			}
			d.obj = obj
		} else if err := decodeForeign(d); err != nil {
			return err
		}
		r.docs = append(r.docs, d)
	}
}

// serviceMonitor is the part of monitoring.coreos.com/v1 ServiceMonitor the
// chart uses; decoding into it strictly catches misspelled fields.
type serviceMonitor struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

func decodeForeign(d doc) error {
	if d.gvk == (schema.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}) {
		var sm serviceMonitor
		if err := yaml.UnmarshalStrict(d.raw, &sm); err != nil {
			return fmt.Errorf("ServiceMonitor %s: %w", d.name, err)
		}
		return nil
	}
	return fmt.Errorf("%s (%s): kind %s is not a Kubernetes API type the test knows", d.name, d.source, d.gvk)
}

func sourceOf(b []byte) string {
	for _, l := range strings.Split(string(b), "\n") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(l), "# Source: "); ok {
			return s
		}
	}
	return "?"
}

func stripComments(b []byte) []byte {
	var out []byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l...)
			out = append(out, '\n')
		}
	}
	return out
}

func (r *rendered) kind(k string) []doc {
	var out []doc
	for _, d := range r.docs {
		if d.gvk.Kind == k {
			out = append(out, d)
		}
	}
	return out
}

func (r *rendered) named(k, name string) (doc, bool) {
	for _, d := range r.kind(k) {
		if d.name == name {
			return d, true
		}
	}
	return doc{}, false
}

// podSpecs returns every pod template (or Pod) of the rendered objects.
func (r *rendered) podSpecs() map[string]*corev1.PodTemplateSpec {
	out := map[string]*corev1.PodTemplateSpec{}
	for _, d := range r.docs {
		key := d.gvk.Kind + "/" + d.name
		switch o := d.obj.(type) {
		case *corev1.Pod:
			out[key] = &corev1.PodTemplateSpec{ObjectMeta: o.ObjectMeta, Spec: o.Spec}
		default:
			if t := podTemplateOf(d.obj); t != nil {
				out[key] = t
			}
		}
	}
	return out
}

// restrictedViolations evaluates a pod spec with the Pod Security Admission
// library at level restricted, latest version.
func restrictedViolations(t testing.TB, tpl *corev1.PodTemplateSpec) []string {
	t.Helper()
	ev, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	res := policy.AggregateCheckResults(ev.EvaluatePod(
		psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()},
		&tpl.ObjectMeta, &tpl.Spec))
	if res.Allowed {
		return nil
	}
	out := make([]string, len(res.ForbiddenReasons))
	for i := range res.ForbiddenReasons {
		out[i] = res.ForbiddenReasons[i] + ": " + res.ForbiddenDetails[i]
	}
	return out
}
