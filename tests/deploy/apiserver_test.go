package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/highgopress/highgopress/platform/testenv"
)

// cluster is the real control plane scripts/kube.sh starts:
//
//	HGP_KUBECONFIG    kubeconfig of kube-apiserver (+ etcd, kube-controller-manager), loopback only
//	HGP_KUBE_BIN_DIR  directory with helm (v4) and kubectl
//
// `bash scripts/kube.sh start && source .run/kube/env` sets both. Without
// them the test is skipped, and fails under HGP_INTEGRATION=require.
type cluster struct {
	kubeconfig string
	helm       string
	client     *kubernetes.Clientset
}

func requireCluster(t *testing.T) *cluster {
	t.Helper()
	cfg, bin := os.Getenv("HGP_KUBECONFIG"), os.Getenv("HGP_KUBE_BIN_DIR")
	if cfg == "" || bin == "" {
		msg := "HGP_KUBECONFIG and HGP_KUBE_BIN_DIR are not set: a real kube-apiserver is required (bash scripts/kube.sh start; source .run/kube/env)"
		if os.Getenv("HGP_INTEGRATION") == "require" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	helm := filepath.Join(bin, "helm")
	if _, err := os.Stat(helm); err != nil {
		t.Fatalf("HGP_KUBE_BIN_DIR: %v", err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", cfg)
	if err != nil {
		t.Fatalf("HGP_KUBECONFIG: %v", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Discovery().ServerVersion(); err != nil {
		t.Fatalf("kube-apiserver at %s does not answer: %v", rc.Host, err)
	}
	return &cluster{kubeconfig: cfg, helm: helm, client: cs}
}

// helmRun runs the helm v4 CLI against the cluster; it returns the combined output.
func (c *cluster) helmRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.helm, append(args, "--kubeconfig", c.kubeconfig)...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// restrictedNamespace creates a namespace enforcing (and warning about) Pod
// Security restricted, deleted at the end of the test.
func (c *cluster) restrictedNamespace(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "hgp-deploy-" + hex.EncodeToString(b)
	ctx := context.Background()
	_, err := c.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: name,
		Labels: map[string]string{
			"pod-security.kubernetes.io/enforce":         "restricted",
			"pod-security.kubernetes.io/enforce-version": "latest",
			"pod-security.kubernetes.io/warn":            "restricted",
			"pod-security.kubernetes.io/warn-version":    "latest",
		},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// hookRunner stands in for the kubelet (there are no nodes) for Helm's hook
// Jobs: it records every Job Helm creates in ns and marks it complete, so
// that `helm install`/`upgrade` get past their hooks. The Job itself — its
// spec and pod template — went through the API server's validation and
// Pod Security admission like anything else.
type hookRunner struct {
	mu   sync.Mutex
	seen map[string]int // job name -> times seen
}

func (c *cluster) runHooks(t *testing.T, ns string) *hookRunner {
	h := &hookRunner{seen: map[string]int{}}
	done := map[string]bool{} // uid
	testenv.Background(t, func(ctx context.Context) error {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
			}
			jobs, err := c.client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				continue
			}
			for i := range jobs.Items {
				j := &jobs.Items[i]
				if done[string(j.UID)] || j.Annotations["helm.sh/hook"] == "" {
					continue
				}
				now := metav1.Now()
				j.Status.StartTime = &now
				j.Status.CompletionTime = &now
				j.Status.Succeeded = 1
				j.Status.Conditions = []batchv1.JobCondition{
					{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now, LastProbeTime: now},
					{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now, LastProbeTime: now},
				}
				if _, err := c.client.BatchV1().Jobs(ns).UpdateStatus(ctx, j, metav1.UpdateOptions{}); err != nil {
					t.Logf("hook Job %s: status update: %v", j.Name, err)
					continue
				}
				done[string(j.UID)] = true
				h.mu.Lock()
				h.seen[j.Name]++
				h.mu.Unlock()
			}
		}
	})
	return h
}

func (h *hookRunner) count(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seen[name]
}

func noPodSecurityWarnings(t *testing.T, step, out string) {
	t.Helper()
	if strings.Contains(out, "would violate PodSecurity") || strings.Contains(out, "violates PodSecurity") {
		t.Errorf("%s: Pod Security warning:\n%s", step, out)
	}
}

// noReplicaFailure waits until every Deployment's pods were created (they
// stay Pending: no nodes) and fails on any ReplicaSet whose pods the API
// server refused (Pod Security enforce rejects Pods, not Deployments).
func (c *cluster) podsAdmitted(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	testenv.EventuallyNoError(t, 90*time.Second, "every Deployment and StatefulSet to have its pods admitted", func() error {
		rss, err := c.client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, rs := range rss.Items {
			for _, cond := range rs.Status.Conditions {
				if cond.Type == appsv1.ReplicaSetReplicaFailure && cond.Status == corev1.ConditionTrue {
					t.Fatalf("ReplicaSet %s cannot create its pods: %s", rs.Name, cond.Message)
				}
			}
		}
		deps, err := c.client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		pods, err := c.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		byComponent := map[string]int{}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil {
				byComponent[p.Labels["app.kubernetes.io/component"]]++
			}
		}
		for _, d := range deps.Items {
			comp := d.Labels["app.kubernetes.io/component"]
			if byComponent[comp] < 1 {
				return fmt.Errorf("no pod of Deployment %s yet", d.Name)
			}
		}
		sss, err := c.client.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, s := range sss.Items {
			if byComponent[s.Labels["app.kubernetes.io/component"]] < 1 {
				return fmt.Errorf("no pod of StatefulSet %s yet", s.Name)
			}
		}
		return nil
	})
}

func (c *cluster) deploymentEnv(t *testing.T, ns, name string) map[string]string {
	t.Helper()
	d, err := c.client.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return envOf(d)
}

// TestChartOnAPIServer installs, upgrades, rolls back and uninstalls the
// chart with helm v4 on a real kube-apiserver in a namespace that enforces
// Pod Security restricted.
func TestChartOnAPIServer(t *testing.T) {
	c := requireCluster(t)
	ctx := context.Background()

	t.Run("namespace enforces restricted", func(t *testing.T) {
		// a privileged pod must be refused by Pod Security (the server allows
		// privileged containers, so only Pod Security can refuse it)
		ns := c.restrictedNamespace(t)
		priv := true
		_, err := c.client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "privileged"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "c", Image: "busybox", SecurityContext: &corev1.SecurityContext{Privileged: &priv},
			}}},
		}, metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "violates PodSecurity") {
			t.Fatalf("privileged pod: %v, want Forbidden by PodSecurity", err)
		}
	})

	ns := c.restrictedNamespace(t)
	hooks := c.runHooks(t, ns)
	chart := chartDir(t)
	phase := func(name string, t0 time.Time) { t.Logf("phase %s: %s", name, time.Since(t0).Round(time.Millisecond)) }

	t0 := time.Now()
	out, err := c.helmRun(t, "install", release, chart, "-n", ns, "--timeout", "3m")
	phase("helm install", t0)
	if err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	noPodSecurityWarnings(t, "install", out)
	if !strings.Contains(out, "STATUS: deployed") {
		t.Fatalf("helm install did not deploy:\n%s", out)
	}
	t0 = time.Now()
	c.podsAdmitted(t, ns)
	phase("pods admitted", t0)
	if n := hooks.count(full("migrations")); n != 1 {
		t.Errorf("migration hook Job ran %d times on install, want 1", n)
	}

	// what the server accepted
	svcs, _ := c.client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	nps, _ := c.client.NetworkingV1().NetworkPolicies(ns).List(ctx, metav1.ListOptions{})
	pdbs, _ := c.client.PolicyV1().PodDisruptionBudgets(ns).List(ctx, metav1.ListOptions{})
	hpas, _ := c.client.AutoscalingV2().HorizontalPodAutoscalers(ns).List(ctx, metav1.ListOptions{})
	sss, _ := c.client.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
	for what, got := range map[string][2]int{
		"Services (4 components, 4 middleware + headless)": {len(svcs.Items), 12},
		"NetworkPolicies":      {len(nps.Items), 8},
		"PodDisruptionBudgets": {len(pdbs.Items), 4},
		"HPAs":                 {len(hpas.Items), 2},
		"StatefulSets":         {len(sss.Items), 4},
	} {
		if got[0] != got[1] {
			t.Errorf("%s: %d accepted, want %d", what, got[0], got[1])
		}
	}
	secretName := release + "-highgopress-secrets"
	sec, err := c.client.CoreV1().Secrets(ns).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	identity := string(sec.Data["identity-secret"])
	if env := c.deploymentEnv(t, ns, full("gateway")); env["HGP_LOG_LEVEL"] != "info" {
		t.Fatalf("gateway HGP_LOG_LEVEL = %q after install", env["HGP_LOG_LEVEL"])
	}

	t0 = time.Now()
	out, err = c.helmRun(t, "upgrade", release, chart, "-n", ns, "--timeout", "3m", "--set", "default.logLevel=debug")
	phase("helm upgrade", t0)
	if err != nil {
		t.Fatalf("helm upgrade: %v\n%s", err, out)
	}
	noPodSecurityWarnings(t, "upgrade", out)
	if env := c.deploymentEnv(t, ns, full("gateway")); env["HGP_LOG_LEVEL"] != "debug" {
		t.Errorf("gateway HGP_LOG_LEVEL = %q after the upgrade, want debug", env["HGP_LOG_LEVEL"])
	}
	if n := hooks.count(full("migrations")); n != 2 {
		t.Errorf("migration hook Job ran %d times after install and upgrade, want 2", n)
	}
	sec, err = c.client.CoreV1().Secrets(ns).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(sec.Data["identity-secret"]) != identity {
		t.Error("the upgrade generated a new identity secret; generated secrets must be kept (lookup)")
	}
	c.podsAdmitted(t, ns)

	t0 = time.Now()
	out, err = c.helmRun(t, "rollback", release, "1", "-n", ns, "--timeout", "3m")
	phase("helm rollback", t0)
	if err != nil {
		t.Fatalf("helm rollback: %v\n%s", err, out)
	}
	noPodSecurityWarnings(t, "rollback", out)
	if env := c.deploymentEnv(t, ns, full("gateway")); env["HGP_LOG_LEVEL"] != "info" {
		t.Errorf("gateway HGP_LOG_LEVEL = %q after the rollback, want info", env["HGP_LOG_LEVEL"])
	}
	hist, err := c.helmRun(t, "history", release, "-n", ns)
	if err != nil || !strings.Contains(hist, "Rollback to 1") {
		t.Errorf("helm history after rollback: %v\n%s", err, hist)
	}
	c.podsAdmitted(t, ns)

	t0 = time.Now()
	out, err = c.helmRun(t, "uninstall", release, "-n", ns, "--wait", "--timeout", "2m")
	phase("helm uninstall", t0)
	if err != nil {
		t.Fatalf("helm uninstall: %v\n%s", err, out)
	}
	testenv.EventuallyNoError(t, 60*time.Second, "the release's Deployments to be gone", func() error {
		deps, err := c.client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(deps.Items) > 0 {
			return fmt.Errorf("%d Deployments left", len(deps.Items))
		}
		return nil
	})
	// the generated secrets outlive the release with the volumes they protect
	if _, err := c.client.CoreV1().Secrets(ns).Get(ctx, secretName, metav1.GetOptions{}); err != nil {
		t.Errorf("generated Secret not kept after uninstall: %v", err)
	}
}

// TestBadValuesOnAPIServer: helm install refuses bad values with a message
// naming the value — including an existing Secret that lacks a key, which
// only a real server can show (lookup).
func TestBadValuesOnAPIServer(t *testing.T) {
	c := requireCluster(t)
	ns := c.restrictedNamespace(t)
	for _, bv := range badValues {
		t.Run(bv.name, func(t *testing.T) {
			args := []string{"install", "bad", chartDir(t), "-n", ns}
			for _, s := range bv.set {
				args = append(args, "--set", s)
			}
			out, err := c.helmRun(t, args...)
			if err == nil {
				t.Fatalf("helm install with %v succeeded:\n%s", bv.set, out)
			}
			if !strings.Contains(out, bv.mention) {
				t.Fatalf("helm install with %v failed without naming %q:\n%s", bv.set, bv.mention, out)
			}
		})
	}
	t.Run("existing secret without a key", func(t *testing.T) {
		_, err := c.client.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "partial"},
			Data: map[string][]byte{
				"identity-secret": []byte(strings.Repeat("i", 40)),
				"mysql-password":  []byte("pw"),
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.helmRun(t, "install", "bad", chartDir(t), "-n", ns, "--set", "mode=production", "--set", "secrets.existingSecret=partial")
		if err == nil || !strings.Contains(out, "jwt-hs256-secret") {
			t.Fatalf("install with a Secret lacking jwt-hs256-secret: %v\n%s", err, out)
		}
	})
	list, err := c.helmRun(t, "list", "-n", ns, "-q")
	if err != nil || strings.TrimSpace(list) != "" {
		t.Errorf("refused installs left releases behind: %v %q", err, list)
	}
}
