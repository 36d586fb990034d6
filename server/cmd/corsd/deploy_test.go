package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	// Every extension envoy.yaml names in a typed_config, registered so
	// protojson resolves its Any; a type not registered here fails the test.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	// Not used by envoy.yaml: registered so that adding Envoy's CORS filter
	// is reported as such, not as an unknown type.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"

	corsdv1 "github.com/corsd/corsd/gen/corsd/v1"
	"github.com/corsd/corsd/gen/corsd/v1/corsdv1connect"
	"github.com/corsd/corsd/server/internal/extauthz"
)

// repoRoot is where deploy/, Dockerfile and go.mod are, from this package.
const repoRoot = "../../.."

// serveFlags is what the real binary says `corsd serve` accepts: each
// flag's name and documented default.
type serveFlags map[string]string

func realServeFlags(t *testing.T) serveFlags {
	t.Helper()
	helpLine := regexp.MustCompile(`^  --([a-z0-9-]+)`)
	defaultLine := regexp.MustCompile(`\(env (CORSD_[A-Z0-9_]+), default "(.*)"\)$`)
	out, err := exec.Command(binPath, "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("corsd serve --help: %v\n%s", err, out)
	}
	flags := serveFlags{}
	var last string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if m := helpLine.FindStringSubmatch(sc.Text()); m != nil {
			last = m[1]
			flags[last] = ""
		} else if m := defaultLine.FindStringSubmatch(sc.Text()); m != nil && last != "" {
			if m[1] != envName(last) {
				t.Fatalf("corsd serve --help: --%s documents env %s, want %s", last, m[1], envName(last))
			}
			flags[last] = m[2]
		}
	}
	if len(flags) < 10 || !slices.Contains(flags.names(), "grpc-addr") {
		t.Fatalf("corsd serve --help listed %d flags; the parser no longer matches its format:\n%s", len(flags), out)
	}
	return flags
}

func (f serveFlags) names() []string {
	var ns []string
	for n := range f {
		ns = append(ns, n)
	}
	return ns
}

// flagOfEnv is the flag an environment variable sets, "" when none.
func (f serveFlags) flagOfEnv(env string) string {
	for n := range f {
		if envName(n) == env {
			return n
		}
	}
	return ""
}

// parsedArgs are container args as `corsd serve` reads them.
type parsedArgs map[string]string

// parseServeArgs checks args against the real flags and returns them by
// name; bool flags given bare are "true".
func parseServeArgs(t *testing.T, where string, args []string, flags serveFlags) parsedArgs {
	t.Helper()
	if len(args) == 0 || args[0] != "serve" {
		t.Fatalf("%s: the first argument must be the command \"serve\", got %q", where, args)
	}
	out := parsedArgs{}
	for i := 1; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			t.Errorf("%s: argument %q is not a flag (corsd serve takes no positional arguments)", where, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		def, ok := flags[name]
		if !ok {
			t.Errorf("%s: flag --%s is not one of corsd serve's flags (corsd serve --help)", where, name)
			continue
		}
		if !hasValue {
			if def == "true" || def == "false" {
				value = "true"
			} else if i+1 < len(args) {
				i++
				value = args[i]
			}
		}
		out[name] = value
	}
	return out
}

// --- Kubernetes -------------------------------------------------------------

// k8sObject is the part of any manifest these tests read; the raw JSON is
// kept for decoding into the kind's own shape.
type k8sObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	file string
	raw  []byte
}

func (o k8sObject) where(field string) string {
	if o.Metadata.Name == "" {
		return fmt.Sprintf("%s: %s: %s", o.file, o.Kind, field)
	}
	return fmt.Sprintf("%s: %s %s: %s", o.file, o.Kind, o.Metadata.Name, field)
}

type securityContext struct {
	RunAsNonRoot             *bool  `json:"runAsNonRoot"`
	RunAsUser                *int64 `json:"runAsUser"`
	ReadOnlyRootFilesystem   *bool  `json:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool  `json:"allowPrivilegeEscalation"`
	Capabilities             *struct {
		Drop []string `json:"drop"`
	} `json:"capabilities"`
}

type probe struct {
	GRPC *struct {
		Port    int    `json:"port"`
		Service string `json:"service"`
	} `json:"grpc"`
	HTTPGet *struct {
		Path string `json:"path"`
		Port any    `json:"port"`
	} `json:"httpGet"`
}

type container struct {
	Name    string   `json:"name"`
	Image   string   `json:"image"`
	Args    []string `json:"args"`
	Command []string `json:"command"`
	Env     []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"env"`
	EnvFrom []struct {
		ConfigMapRef *struct{ Name string } `json:"configMapRef"`
		SecretRef    *struct{ Name string } `json:"secretRef"`
	} `json:"envFrom"`
	Ports []struct {
		Name          string `json:"name"`
		ContainerPort int    `json:"containerPort"`
	} `json:"ports"`
	ReadinessProbe *probe `json:"readinessProbe"`
	LivenessProbe  *probe `json:"livenessProbe"`
	Resources      struct {
		Requests map[string]string `json:"requests"`
		Limits   map[string]string `json:"limits"`
	} `json:"resources"`
	SecurityContext *securityContext `json:"securityContext"`
	VolumeMounts    []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
	} `json:"volumeMounts"`
}

type deployment struct {
	Spec struct {
		Replicas *int `json:"replicas"`
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Template struct {
			Metadata struct {
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
			Spec struct {
				TerminationGracePeriodSeconds *int64           `json:"terminationGracePeriodSeconds"`
				SecurityContext               *securityContext `json:"securityContext"`
				Containers                    []container      `json:"containers"`
				Volumes                       []struct {
					Name     string           `json:"name"`
					EmptyDir *json.RawMessage `json:"emptyDir"`
				} `json:"volumes"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

type service struct {
	Spec struct {
		ClusterIP string            `json:"clusterIP"`
		Selector  map[string]string `json:"selector"`
		Ports     []struct {
			Name        string `json:"name"`
			Port        int    `json:"port"`
			TargetPort  any    `json:"targetPort"`
			AppProtocol string `json:"appProtocol"`
		} `json:"ports"`
	} `json:"spec"`
}

type keyed struct {
	Data       map[string]string `json:"data"`
	StringData map[string]string `json:"stringData"`
}

type pdb struct {
	Spec struct {
		MinAvailable   any `json:"minAvailable"`
		MaxUnavailable any `json:"maxUnavailable"`
		Selector       struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
	} `json:"spec"`
}

type hpa struct {
	Spec struct {
		ScaleTargetRef struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicas int `json:"minReplicas"`
		MaxReplicas int `json:"maxReplicas"`
		Metrics     []struct {
			Type     string `json:"type"`
			Resource *struct {
				Name   string `json:"name"`
				Target struct {
					Type               string `json:"type"`
					AverageUtilization int    `json:"averageUtilization"`
				} `json:"target"`
			} `json:"resource"`
		} `json:"metrics"`
	} `json:"spec"`
}

// loadManifests reads every YAML document under deploy/k8s.
func loadManifests(t *testing.T) []k8sObject {
	t.Helper()
	dir := filepath.Join(repoRoot, "deploy", "k8s")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s (%v)", dir, err)
	}
	var objs []k8sObject
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitYAMLDocuments(data) {
			js, err := yaml.YAMLToJSON(doc)
			if err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			if string(js) == "null" {
				continue
			}
			var o k8sObject
			if err := json.Unmarshal(js, &o); err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			o.file, o.raw = filepath.Join("deploy", "k8s", filepath.Base(f)), js
			if o.APIVersion == "" || o.Kind == "" || (o.Metadata.Name == "" && o.Kind != "Kustomization") {
				t.Errorf("%s: document %d lacks apiVersion, kind or metadata.name", o.file, i)
			}
			objs = append(objs, o)
		}
	}
	return objs
}

func splitYAMLDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur []string
	for line := range strings.SplitSeq(string(data), "\n") {
		if strings.TrimRight(line, " \t\r") == "---" {
			docs = append(docs, []byte(strings.Join(cur, "\n")))
			cur = nil
			continue
		}
		cur = append(cur, line)
	}
	return append(docs, []byte(strings.Join(cur, "\n")))
}

func find(t *testing.T, objs []k8sObject, kind, name string) k8sObject {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && o.Metadata.Name == name {
			return o
		}
	}
	t.Fatalf("deploy/k8s: no %s named %q", kind, name)
	return k8sObject{}
}

func decode[T any](t *testing.T, o k8sObject) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(o.raw, &v); err != nil {
		t.Fatalf("%s: %v", o.where("decoding"), err)
	}
	return v
}

func hostPort(t *testing.T, where, addr string) (string, int) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s: %q is not host:port (a Kubernetes pod is reached over TCP): %v", where, addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("%s: port of %q: %v", where, addr, err)
	}
	return host, p
}

// isLoopback mirrors app's rule for listeners it accepts without
// --insecure-admin.
func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// resolvePort turns a Service targetPort or probe port (number or name)
// into the container port number.
func resolvePort(t *testing.T, where string, port any, c container) int {
	t.Helper()
	switch p := port.(type) {
	case float64:
		return int(p)
	case string:
		if n, err := strconv.Atoi(p); err == nil {
			return n
		}
		for _, cp := range c.Ports {
			if cp.Name == p {
				return cp.ContainerPort
			}
		}
		t.Fatalf("%s: port name %q is not a port of container %s", where, p, c.Name)
	}
	t.Fatalf("%s: port %v is neither a number nor a name", where, port)
	return 0
}

func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// The Kubernetes manifests start the real binary as written: every flag
// and variable exists, probes and Services point at the ports it listens
// on, the probe asks for a service it registers, and shutdown fits in the
// grace period.
func TestDeployK8sManifestsMatchTheBinary(t *testing.T) {
	flags := realServeFlags(t)
	objs := loadManifests(t)

	depObj := find(t, objs, "Deployment", "corsd")
	dep := decode[deployment](t, depObj)
	pod := dep.Spec.Template.Spec
	var c container
	for _, cc := range pod.Containers {
		if cc.Name == "corsd" {
			c = cc
		}
	}
	if c.Name == "" {
		t.Fatalf("%s: no container named corsd", depObj.where("spec.template.spec.containers"))
	}
	if len(c.Command) != 0 {
		t.Errorf("%s: must not override the image's ENTRYPOINT /corsd, got %q", depObj.where("containers[corsd].command"), c.Command)
	}
	args := parseServeArgs(t, depObj.where("containers[corsd].args"), c.Args, flags)

	// Every CORSD_* variable the container gets names a real flag, and is
	// not also given as a flag (the flag would silently win).
	envSources := map[string]string{} // CORSD_X -> where it is set
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, "CORSD_") {
			envSources[e.Name] = depObj.where("containers[corsd].env." + e.Name)
		}
	}
	for _, ef := range c.EnvFrom {
		var o k8sObject
		switch {
		case ef.ConfigMapRef != nil:
			o = find(t, objs, "ConfigMap", ef.ConfigMapRef.Name)
		case ef.SecretRef != nil:
			o = find(t, objs, "Secret", ef.SecretRef.Name)
		default:
			t.Errorf("%s: envFrom entry without configMapRef or secretRef", depObj.where("containers[corsd].envFrom"))
			continue
		}
		kv := decode[keyed](t, o)
		for _, m := range []map[string]string{kv.Data, kv.StringData} {
			for k := range m {
				if !strings.HasPrefix(k, "CORSD_") {
					t.Errorf("%s: key %s is not a CORSD_* flag variable, yet envFrom hands every key to corsd", o.where("data"), k)
					continue
				}
				envSources[k] = o.where("data." + k)
			}
		}
	}
	if _, ok := envSources["CORSD_REDIS_URL"]; !ok {
		t.Errorf("%s: CORSD_REDIS_URL is not set for the corsd container; with 3 replicas each would keep its own configurations",
			depObj.where("containers[corsd].envFrom"))
	}
	for env, where := range envSources {
		f := flags.flagOfEnv(env)
		if f == "" {
			t.Errorf("%s: %s is not the variable of any corsd serve flag", where, env)
			continue
		}
		if _, dup := args[f]; dup {
			t.Errorf("%s: %s duplicates --%s in the container args (the flag wins; set it in one place)", where, env, f)
		}
	}
	setting := func(name string) (string, bool) {
		if v, ok := args[name]; ok {
			return v, true
		}
		for _, o := range objs {
			if o.Kind != "ConfigMap" && o.Kind != "Secret" {
				continue
			}
			kv := decode[keyed](t, o)
			if v, ok := kv.Data[envName(name)]; ok {
				return v, true
			}
			if v, ok := kv.StringData[envName(name)]; ok {
				return v, true
			}
		}
		return flags[name], false
	}

	// Listeners: where the probes and Services must point.
	grpcAddr, _ := setting("grpc-addr")
	httpAddr, _ := setting("http-addr")
	grpcHost, grpcPort := hostPort(t, depObj.where("--grpc-addr"), grpcAddr)
	httpHost, httpPort := hostPort(t, depObj.where("--http-addr"), httpAddr)
	if isLoopback(grpcHost) || isLoopback(httpHost) {
		t.Errorf("%s: --grpc-addr %s / --http-addr %s: probes and Services cannot reach a loopback listener", depObj.where("containers[corsd].args"), grpcAddr, httpAddr)
	}
	authFile, _ := setting("auth-file")
	if v, _ := setting("insecure-admin"); v != "true" && authFile == "" && !(isLoopback(grpcHost) && isLoopback(httpHost)) {
		t.Errorf("%s: non-loopback listeners need --auth-file or --insecure-admin, or corsd refuses to start", depObj.where("containers[corsd].args"))
	}
	if authFile != "" {
		mounted := false
		for _, m := range c.VolumeMounts {
			if strings.HasPrefix(authFile, strings.TrimSuffix(m.MountPath, "/")+"/") {
				mounted = true
			}
		}
		if !mounted {
			t.Errorf("%s: --auth-file %s is on no volumeMount: corsd would fail to start", depObj.where("containers[corsd].volumeMounts"), authFile)
		}
	}
	containerPorts := map[int]bool{}
	for _, p := range c.Ports {
		containerPorts[p.ContainerPort] = true
	}
	for _, p := range []int{grpcPort, httpPort} {
		if !containerPorts[p] {
			t.Errorf("%s: listener port %d is not declared", depObj.where("containers[corsd].ports"), p)
		}
	}

	// Probes.
	registered := []string{corsdv1connect.DecisionServiceName, corsdv1connect.ConfigServiceName}
	switch rp := c.ReadinessProbe; {
	case rp == nil || rp.GRPC == nil:
		t.Errorf("%s: want a native gRPC probe (grpc.health.v1)", depObj.where("containers[corsd].readinessProbe"))
	default:
		if rp.GRPC.Port != grpcPort {
			t.Errorf("%s: port %d, but --grpc-addr listens on %d", depObj.where("containers[corsd].readinessProbe.grpc.port"), rp.GRPC.Port, grpcPort)
		}
		if !slices.Contains(registered, rp.GRPC.Service) {
			t.Errorf("%s: %q is not a service corsd reports health for (%q)", depObj.where("containers[corsd].readinessProbe.grpc.service"), rp.GRPC.Service, registered)
		}
	}
	switch lp := c.LivenessProbe; {
	case lp == nil || lp.HTTPGet == nil:
		t.Errorf("%s: want an HTTP probe of /healthz", depObj.where("containers[corsd].livenessProbe"))
	default:
		if p := resolvePort(t, depObj.where("livenessProbe.httpGet.port"), lp.HTTPGet.Port, c); p != httpPort {
			t.Errorf("%s: port %d, but --http-addr listens on %d", depObj.where("containers[corsd].livenessProbe.httpGet.port"), p, httpPort)
		}
		if lp.HTTPGet.Path != "/healthz" {
			t.Errorf("%s: %q, want /healthz (liveness must not follow the store, as /readyz does)", depObj.where("containers[corsd].livenessProbe.httpGet.path"), lp.HTTPGet.Path)
		}
	}

	// Security context: the container's own value wins over the pod's.
	boolOf := func(field string, cv, pv *bool) bool {
		if cv != nil {
			return *cv
		}
		if pv != nil {
			return *pv
		}
		t.Errorf("%s: not set", depObj.where("securityContext."+field))
		return false
	}
	csc, psc := c.SecurityContext, pod.SecurityContext
	if csc == nil {
		csc = &securityContext{}
	}
	if psc == nil {
		psc = &securityContext{}
	}
	if !boolOf("runAsNonRoot", csc.RunAsNonRoot, psc.RunAsNonRoot) {
		t.Errorf("%s: want true", depObj.where("securityContext.runAsNonRoot"))
	}
	uid := csc.RunAsUser
	if uid == nil {
		uid = psc.RunAsUser
	}
	if uid == nil || *uid != 65532 {
		t.Errorf("%s: want 65532 (the image's nonroot user), got %v", depObj.where("securityContext.runAsUser"), uid)
	}
	if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
		t.Errorf("%s: want true", depObj.where("containers[corsd].securityContext.readOnlyRootFilesystem"))
	}
	if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		t.Errorf("%s: want false", depObj.where("containers[corsd].securityContext.allowPrivilegeEscalation"))
	}
	if csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") {
		t.Errorf("%s: want [ALL]", depObj.where("containers[corsd].securityContext.capabilities.drop"))
	}

	// Shutdown: drain, then in-flight calls, within the grace period.
	dur := func(name string) time.Duration {
		v, _ := setting(name)
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s: --%s %q: %v", depObj.where("containers[corsd].args"), name, v, err)
		}
		return d
	}
	drain, shutdown := dur("drain-delay"), dur("shutdown-timeout")
	if drain <= 0 {
		t.Errorf("%s: --drain-delay is %s; without it the gateway keeps calling a pod that is going away", depObj.where("containers[corsd].args"), drain)
	}
	switch g := pod.TerminationGracePeriodSeconds; {
	case g == nil:
		t.Errorf("%s: not set (default 30s), want it explicit and more than --drain-delay %s + --shutdown-timeout %s",
			depObj.where("spec.template.spec.terminationGracePeriodSeconds"), drain, shutdown)
	case time.Duration(*g)*time.Second <= drain+shutdown:
		t.Errorf("%s: %ds, want more than --drain-delay %s + --shutdown-timeout %s (SIGKILL would cut in-flight calls)",
			depObj.where("spec.template.spec.terminationGracePeriodSeconds"), *g, drain, shutdown)
	}

	// The embedded store's directory is a writable volume (the root
	// filesystem is read-only).
	dataDir, _ := setting("data-dir")
	mounted := ""
	for _, m := range c.VolumeMounts {
		if m.MountPath == dataDir {
			mounted = m.Name
		}
	}
	emptyDir := false
	for _, v := range pod.Volumes {
		if v.Name == mounted && v.EmptyDir != nil {
			emptyDir = true
		}
	}
	if !emptyDir {
		t.Errorf("%s: --data-dir %s is not an emptyDir volume mount; with readOnlyRootFilesystem the store cannot open it", depObj.where("containers[corsd].volumeMounts"), dataDir)
	}

	if r := c.Resources; r.Requests["cpu"] == "" || r.Requests["memory"] == "" || r.Limits["memory"] == "" {
		t.Errorf("%s: want requests.cpu (the HPA scales on it), requests.memory and limits.memory, got %+v", depObj.where("containers[corsd].resources"), r)
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 3 {
		t.Errorf("%s: want 3", depObj.where("spec.replicas"))
	}
	labels := dep.Spec.Template.Metadata.Labels
	if !subset(dep.Spec.Selector.MatchLabels, labels) {
		t.Errorf("%s: does not select the pod template's labels %v", depObj.where("spec.selector"), labels)
	}
	ann := dep.Spec.Template.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(httpPort) || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("%s: want scrape \"true\", port %q, path /metrics, got %v", depObj.where("spec.template.metadata.annotations"), strconv.Itoa(httpPort), ann)
	}

	// Services reach the listeners.
	for _, name := range []string{"corsd", "corsd-headless"} {
		so := find(t, objs, "Service", name)
		svc := decode[service](t, so)
		if !subset(svc.Spec.Selector, labels) {
			t.Errorf("%s: %v does not select corsd's pods (%v)", so.where("spec.selector"), svc.Spec.Selector, labels)
		}
		hasGRPC := false
		for _, p := range svc.Spec.Ports {
			tp := resolvePort(t, so.where("spec.ports["+p.Name+"].targetPort"), p.TargetPort, c)
			if tp != grpcPort && tp != httpPort {
				t.Errorf("%s: %d is neither --grpc-addr's port %d nor --http-addr's %d", so.where("spec.ports["+p.Name+"].targetPort"), tp, grpcPort, httpPort)
			}
			if tp == grpcPort {
				hasGRPC = true
				if p.AppProtocol != "grpc" {
					t.Errorf("%s: %q, want grpc (meshes and gateways then speak HTTP/2)", so.where("spec.ports["+p.Name+"].appProtocol"), p.AppProtocol)
				}
			}
		}
		if !hasGRPC {
			t.Errorf("%s: no port targets the gRPC listener %d", so.where("spec.ports"), grpcPort)
		}
	}
	if svc := decode[service](t, find(t, objs, "Service", "corsd-headless")); svc.Spec.ClusterIP != "None" {
		t.Errorf("deploy/k8s/service.yaml: Service corsd-headless: spec.clusterIP: %q, want None (Envoy's STRICT_DNS must see every pod)", svc.Spec.ClusterIP)
	}

	// Disruptions and scaling.
	po := find(t, objs, "PodDisruptionBudget", "corsd")
	p := decode[pdb](t, po)
	if !subset(p.Spec.Selector.MatchLabels, labels) {
		t.Errorf("%s: does not select corsd's pods", po.where("spec.selector"))
	}
	ho := find(t, objs, "HorizontalPodAutoscaler", "corsd")
	h := decode[hpa](t, ho)
	if ho.APIVersion != "autoscaling/v2" {
		t.Errorf("%s: %s, want autoscaling/v2", ho.where("apiVersion"), ho.APIVersion)
	}
	if h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != "corsd" {
		t.Errorf("%s: want Deployment corsd, got %+v", ho.where("spec.scaleTargetRef"), h.Spec.ScaleTargetRef)
	}
	cpu70 := false
	for _, m := range h.Spec.Metrics {
		if m.Type == "Resource" && m.Resource != nil && m.Resource.Name == "cpu" && m.Resource.Target.AverageUtilization == 70 {
			cpu70 = true
		}
	}
	if !cpu70 {
		t.Errorf("%s: want a CPU utilisation target of 70%%", ho.where("spec.metrics"))
	}
	if dep.Spec.Replicas != nil && (h.Spec.MinReplicas > *dep.Spec.Replicas || h.Spec.MaxReplicas < h.Spec.MinReplicas) {
		t.Errorf("%s: minReplicas %d / maxReplicas %d do not fit replicas %d", ho.where("spec"), h.Spec.MinReplicas, h.Spec.MaxReplicas, *dep.Spec.Replicas)
	}
	if minAvail, ok := p.Spec.MinAvailable.(float64); ok && int(minAvail) >= h.Spec.MinReplicas {
		t.Errorf("%s: minAvailable %d ≥ the HPA's minReplicas %d: node drains would block", po.where("spec.minAvailable"), int(minAvail), h.Spec.MinReplicas)
	}
	if p.Spec.MinAvailable == nil && p.Spec.MaxUnavailable == nil {
		t.Errorf("%s: want minAvailable or maxUnavailable", po.where("spec"))
	}

	// The bundled Redis is the one CORSD_REDIS_URL names.
	ro := find(t, objs, "Service", "corsd-redis")
	rs := decode[service](t, ro)
	rd := decode[deployment](t, find(t, objs, "Deployment", "corsd-redis"))
	if !subset(rs.Spec.Selector, rd.Spec.Template.Metadata.Labels) {
		t.Errorf("%s: does not select the corsd-redis pods", ro.where("spec.selector"))
	}
	if img := rd.Spec.Template.Spec.Containers[0].Image; img != "redis:7" && !strings.HasPrefix(img, "redis:7.") {
		t.Errorf("deploy/k8s/redis.yaml: Deployment corsd-redis: image %q, want redis:7", img)
	}
	if url, _ := setting("redis-url"); len(rs.Spec.Ports) == 0 || !strings.Contains(url, fmt.Sprintf("corsd-redis:%d", rs.Spec.Ports[0].Port)) {
		t.Errorf("deploy/k8s/secret.yaml: Secret corsd-secrets: CORSD_REDIS_URL %q does not name the corsd-redis Service", url)
	}

	// kustomization.yaml applies every file, and only files that exist.
	ko := find(t, objs, "Kustomization", "")
	var kust struct {
		Resources []string `json:"resources"`
	}
	if err := json.Unmarshal(ko.raw, &kust); err != nil {
		t.Fatal(err)
	}
	files := map[string]bool{}
	for _, o := range objs {
		if o.Kind != "Kustomization" {
			files[filepath.Base(o.file)] = true
		}
	}
	for _, r := range kust.Resources {
		if !files[r] {
			t.Errorf("%s: resource %s is not a manifest in deploy/k8s", ko.where("resources"), r)
		}
		delete(files, r)
	}
	for f := range files {
		t.Errorf("%s: %s is not listed, so kubectl apply -k skips it", ko.where("resources"), f)
	}
}

// --- Dockerfile -------------------------------------------------------------

// The image runs the binary as built here: its default command uses real
// flags, as the non-root user, with the toolchain go.mod asks for.
func TestDeployDockerfileMatchesTheBinary(t *testing.T) {
	flags := realServeFlags(t)
	data, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var (
		froms              []string
		user, entry, cmd   string
		exposed            []int
		buildsMainPackage  bool
		goVersionFromGoMod string
	)
	gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod); m != nil {
		goVersionFromGoMod = string(m[1])
	}
	// Join continuation lines, then read instruction by instruction.
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		instr, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			froms = append(froms, strings.Fields(rest)[0])
		case "USER":
			user = rest
		case "ENTRYPOINT":
			entry = rest
		case "CMD":
			cmd = rest
		case "EXPOSE":
			for _, f := range strings.Fields(rest) {
				p, err := strconv.Atoi(strings.TrimSuffix(f, "/tcp"))
				if err != nil {
					t.Errorf("Dockerfile: EXPOSE %q: %v", f, err)
				}
				exposed = append(exposed, p)
			}
		case "RUN":
			if strings.Contains(rest, "CGO_ENABLED=0 go build") && strings.Contains(rest, "-o /corsd ./server/cmd/corsd") &&
				strings.Contains(rest, "-trimpath") && strings.Contains(rest, `-ldflags="-s -w"`) {
				buildsMainPackage = true
			}
		}
	}
	if len(froms) != 2 || froms[0] != "golang:"+goVersionFromGoMod || froms[1] != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("Dockerfile: FROM %q, want [golang:%s gcr.io/distroless/static-debian12:nonroot] (go.mod says go %s)", froms, goVersionFromGoMod, goVersionFromGoMod)
	}
	if !buildsMainPackage {
		t.Error("Dockerfile: RUN: no static, trimmed `CGO_ENABLED=0 go build -trimpath -ldflags=\"-s -w\" -o /corsd ./server/cmd/corsd`")
	}
	if _, err := os.Stat(filepath.Join(repoRoot, "server", "cmd", "corsd", "main.go")); err != nil {
		t.Errorf("Dockerfile: RUN builds ./server/cmd/corsd: %v", err)
	}
	if user != "65532:65532" {
		t.Errorf("Dockerfile: USER %q, want 65532:65532 (distroless nonroot)", user)
	}
	var entryArgs, cmdArgs []string
	if err := json.Unmarshal([]byte(entry), &entryArgs); err != nil || !slices.Equal(entryArgs, []string{"/corsd"}) {
		t.Errorf("Dockerfile: ENTRYPOINT %s, want [\"/corsd\"] in exec form (signals reach corsd, which drains on SIGTERM)", entry)
	}
	if err := json.Unmarshal([]byte(cmd), &cmdArgs); err != nil {
		t.Fatalf("Dockerfile: CMD %s is not exec form: %v", cmd, err)
	}
	args := parseServeArgs(t, "Dockerfile: CMD", cmdArgs, flags)
	var ports []int
	local := true
	for _, f := range []string{"grpc-addr", "http-addr"} {
		addr, ok := args[f]
		if !ok {
			t.Errorf("Dockerfile: CMD: --%s not set; the default %s is loopback, unreachable from outside the container", f, flags[f])
			continue
		}
		host, port := hostPort(t, "Dockerfile: CMD --"+f, addr)
		local = local && isLoopback(host)
		ports = append(ports, port)
	}
	if !local && args["insecure-admin"] != "true" {
		t.Error("Dockerfile: CMD: non-loopback listeners need --insecure-admin, or corsd refuses to start")
	}
	slices.Sort(ports)
	slices.Sort(exposed)
	if !slices.Equal(ports, exposed) {
		t.Errorf("Dockerfile: EXPOSE %v, but CMD listens on %v", exposed, ports)
	}
	if args["data-dir"] == "" {
		t.Error("Dockerfile: CMD: --data-dir not set to the image's writable /data")
	}

	// .dockerignore keeps history and tools out, and nothing the build needs.
	ign, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for line := range strings.SplitSeq(string(ign), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	for _, want := range []string{".git", ".tools", "bin"} {
		if !slices.Contains(patterns, want) {
			t.Errorf(".dockerignore: does not exclude %s", want)
		}
	}
	for _, needed := range []string{"go.mod", "go.sum", "gen", "server", "server/cmd/corsd/main.go"} {
		for _, p := range patterns {
			if ok, _ := filepath.Match(p, needed); ok {
				t.Errorf(".dockerignore: %q excludes %s, which the build needs", p, needed)
			}
		}
	}
}

// --- Envoy ------------------------------------------------------------------

// loadEnvoyBootstrap parses deploy/envoy/envoy.yaml as Envoy would: into
// its bootstrap proto, refusing unknown fields and unknown typed_config
// types.
func loadEnvoyBootstrap(t *testing.T) *bootstrapv3.Bootstrap {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "envoy", "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatalf("deploy/envoy/envoy.yaml: %v", err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, b); err != nil {
		t.Fatalf("deploy/envoy/envoy.yaml is not an Envoy v3 bootstrap: %v", err)
	}
	return b
}

// validateDeep runs Envoy's validation rules (protoc-gen-validate) on m and
// on every message packed in an Any inside it, which PGV alone does not
// open.
func validateDeep(m proto.Message, path string) []error {
	var errs []error
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
		}
	}
	var walk func(protoreflect.Message, string)
	walk = func(rm protoreflect.Message, p string) {
		if a, ok := rm.Interface().(*anypb.Any); ok {
			inner, err := a.UnmarshalNew()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p, err))
				return
			}
			errs = append(errs, validateDeep(inner, p+"<"+a.GetTypeUrl()+">")...)
			return
		}
		rm.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			fp := p + "." + string(fd.Name())
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := 0; i < v.List().Len(); i++ {
					walk(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", fp, i))
				}
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					walk(mv.Message(), fmt.Sprintf("%s[%s]", fp, k.String()))
					return true
				})
			case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
				walk(v.Message(), fp)
			}
			return true
		})
	}
	walk(m.ProtoReflect(), path)
	return errs
}

func unpack[T proto.Message](t *testing.T, where string, a *anypb.Any, into T) T {
	t.Helper()
	if err := a.UnmarshalTo(into); err != nil {
		t.Fatalf("deploy/envoy/envoy.yaml: %s: %v", where, err)
	}
	return into
}

// envoy.yaml is a valid Envoy v3 bootstrap that asks corsd through
// ext_authz as intended: right cluster, HTTP/2 with a health check of a
// service corsd registers, a short timeout, fail-open, the headers the
// adapter reads, per-route buckets, and no static CORS filter.
func TestEnvoyBootstrapIsValidAndAsksCorsd(t *testing.T) {
	b := loadEnvoyBootstrap(t)
	for _, err := range validateDeep(b, "bootstrap") {
		t.Errorf("deploy/envoy/envoy.yaml: Envoy would reject: %v", err)
	}

	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = c
	}

	var (
		hcm     *hcmv3.HttpConnectionManager
		authz   *extauthzv3.ExtAuthz
		filters []string
	)
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				if f.GetName() == "envoy.filters.network.http_connection_manager" {
					hcm = unpack(t, "listeners."+l.GetName()+".http_connection_manager", f.GetTypedConfig(), &hcmv3.HttpConnectionManager{})
				}
			}
		}
		if l.GetAddress().GetSocketAddress().GetPortValue() != 8000 {
			t.Errorf("deploy/envoy/envoy.yaml: listeners.%s.address: port %d, want 8000", l.GetName(), l.GetAddress().GetSocketAddress().GetPortValue())
		}
	}
	if hcm == nil {
		t.Fatal("deploy/envoy/envoy.yaml: static_resources.listeners: no http_connection_manager")
	}
	for _, f := range hcm.GetHttpFilters() {
		filters = append(filters, f.GetName())
		typeURL := f.GetTypedConfig().GetTypeUrl()
		if strings.Contains(f.GetName(), "cors") || strings.Contains(typeURL, "filters.http.cors") {
			t.Errorf("deploy/envoy/envoy.yaml: http_filters: %s (%s): Envoy's CORS filter would answer preflights with one static policy; corsd is the policy", f.GetName(), typeURL)
		}
		if f.GetName() == "envoy.filters.http.ext_authz" {
			authz = unpack(t, "http_filters.ext_authz", f.GetTypedConfig(), &extauthzv3.ExtAuthz{})
		}
	}
	if len(filters) == 0 || filters[len(filters)-1] != "envoy.filters.http.router" {
		t.Errorf("deploy/envoy/envoy.yaml: http_filters %v: the router must be last", filters)
	}
	if authz == nil {
		t.Fatalf("deploy/envoy/envoy.yaml: http_filters %v: no envoy.filters.http.ext_authz", filters)
	}

	// The ext_authz filter.
	cluster := authz.GetGrpcService().GetEnvoyGrpc().GetClusterName()
	if cluster != "corsd" {
		t.Errorf("deploy/envoy/envoy.yaml: ext_authz.grpc_service.envoy_grpc.cluster_name: %q, want corsd", cluster)
	}
	if got := authz.GetGrpcService().GetTimeout().AsDuration(); got != 50*time.Millisecond {
		t.Errorf("deploy/envoy/envoy.yaml: ext_authz.grpc_service.timeout: %s, want 50ms", got)
	}
	if !authz.GetFailureModeAllow() {
		t.Error("deploy/envoy/envoy.yaml: ext_authz.failure_mode_allow: false; a corsd outage would deny every S3 request")
	}
	if authz.GetIncludePeerCertificate() {
		t.Error("deploy/envoy/envoy.yaml: ext_authz.include_peer_certificate: want false")
	}
	if authz.GetTransportApiVersion().String() != "V3" {
		t.Errorf("deploy/envoy/envoy.yaml: ext_authz.transport_api_version: %s, want V3", authz.GetTransportApiVersion())
	}
	if authz.GetEncodeRawHeaders() || authz.GetWithRequestBody() != nil {
		t.Error("deploy/envoy/envoy.yaml: ext_authz: encode_raw_headers / with_request_body cost time and corsd needs neither")
	}
	if allowed := authz.GetAllowedHeaders(); allowed != nil {
		// With an allow-list, the adapter must still get every header it reads.
		for _, h := range extauthz.RequestHeaders() {
			found := false
			for _, p := range allowed.GetPatterns() {
				if p.GetExact() == h || (p.GetPrefix() != "" && strings.HasPrefix(h, p.GetPrefix())) {
					found = true
				}
			}
			if !found {
				t.Errorf("deploy/envoy/envoy.yaml: ext_authz.allowed_headers: %s is not sent, yet corsd decides on it", h)
			}
		}
	}

	// The corsd cluster: HTTP/2, health-checked on a registered service,
	// on the port the Deployment's --grpc-addr listens on.
	cc := clusters[cluster]
	if cc == nil {
		t.Fatalf("deploy/envoy/envoy.yaml: clusters: no cluster %q for ext_authz", cluster)
	}
	opts, ok := cc.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	if !ok {
		t.Errorf("deploy/envoy/envoy.yaml: clusters.%s.typed_extension_protocol_options: no HttpProtocolOptions; gRPC needs HTTP/2", cluster)
	} else if po := unpack(t, "clusters."+cluster+".typed_extension_protocol_options", opts, &upstreamhttpv3.HttpProtocolOptions{}); po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Errorf("deploy/envoy/envoy.yaml: clusters.%s: explicit_http_config.http2_protocol_options not set; gRPC needs HTTP/2", cluster)
	}
	if ct := cc.GetConnectTimeout().AsDuration(); ct <= 0 || ct > time.Second {
		t.Errorf("deploy/envoy/envoy.yaml: clusters.%s.connect_timeout: %s, want short (≤ 1s)", cluster, ct)
	}
	registered := []string{corsdv1connect.DecisionServiceName, corsdv1connect.ConfigServiceName}
	grpcHC := false
	for _, hc := range cc.GetHealthChecks() {
		if g := hc.GetGrpcHealthCheck(); g != nil {
			grpcHC = true
			if !slices.Contains(registered, g.GetServiceName()) {
				t.Errorf("deploy/envoy/envoy.yaml: clusters.%s.health_checks.grpc_health_check.service_name: %q is not a service corsd reports health for (%q)",
					cluster, g.GetServiceName(), registered)
			}
		}
	}
	if !grpcHC {
		t.Errorf("deploy/envoy/envoy.yaml: clusters.%s.health_checks: no grpc_health_check", cluster)
	}
	flags := realServeFlags(t)
	dep := decode[deployment](t, find(t, loadManifests(t), "Deployment", "corsd"))
	var grpcPort int
	for _, c := range dep.Spec.Template.Spec.Containers {
		if c.Name == "corsd" {
			args := parseServeArgs(t, "deploy/k8s/deployment.yaml: Deployment corsd: args", c.Args, flags)
			_, grpcPort = hostPort(t, "deploy/k8s/deployment.yaml: --grpc-addr", args["grpc-addr"])
			if args["envoy-ext-authz"] != "true" {
				t.Error("deploy/k8s/deployment.yaml: Deployment corsd: args: no --envoy-ext-authz, so the Envoy in deploy/envoy would get UNIMPLEMENTED (and, failing open, no CORS headers)")
			}
		}
	}
	for _, le := range cc.GetLoadAssignment().GetEndpoints() {
		for _, ep := range le.GetLbEndpoints() {
			if p := ep.GetEndpoint().GetAddress().GetSocketAddress().GetPortValue(); int(p) != grpcPort {
				t.Errorf("deploy/envoy/envoy.yaml: clusters.%s endpoint port %d, but corsd's --grpc-addr listens on %d", cluster, p, grpcPort)
			}
		}
	}

	// Routes: every cluster exists; at least one route shows the per-route
	// bucket; the store's own CORS headers are removed.
	rc := hcm.GetRouteConfig()
	perRouteBucket := false
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if name := r.GetRoute().GetCluster(); clusters[name] == nil {
				t.Errorf("deploy/envoy/envoy.yaml: virtual_hosts.%s: route to unknown cluster %q", vh.GetName(), name)
			}
			for _, cfgs := range []map[string]*anypb.Any{r.GetTypedPerFilterConfig(), vh.GetTypedPerFilterConfig()} {
				if a, ok := cfgs["envoy.filters.http.ext_authz"]; ok {
					pr := unpack(t, "virtual_hosts."+vh.GetName()+".typed_per_filter_config", a, &extauthzv3.ExtAuthzPerRoute{})
					if pr.GetCheckSettings().GetContextExtensions()[extauthz.ContextExtensionBucket] != "" {
						perRouteBucket = true
					}
				}
			}
		}
	}
	if !perRouteBucket {
		t.Errorf("deploy/envoy/envoy.yaml: no route sets typed_per_filter_config check_settings.context_extensions.%s", extauthz.ContextExtensionBucket)
	}
	if !slices.Contains(rc.GetResponseHeadersToRemove(), "access-control-allow-origin") {
		t.Error("deploy/envoy/envoy.yaml: route_config.response_headers_to_remove: the store's own Access-Control-Allow-Origin would reach browsers")
	}
	if _, ok := clusters["s3_upstream"]; !ok {
		t.Error("deploy/envoy/envoy.yaml: clusters: no s3_upstream")
	}
}

// The real binary, started with --envoy-ext-authz, answers Envoy's Check
// on its gRPC listener from the configuration stored through ConfigService:
// an allowed preflight is answered locally with 200, an actual request
// passes with the CORS headers to add.
func TestEnvoyExtAuthzThroughTheBinary(t *testing.T) {
	s := startServer(t, t.TempDir(), "--envoy-ext-authz", "--envoy-virtual-host-suffix", ".s3.example.com")
	conn := s.grpcConn(t)
	ctx := t.Context()
	if _, err := corsdv1.NewConfigServiceClient(conn).PutBucketCors(ctx, &corsdv1.PutBucketCorsRequest{Bucket: "photos",
		Document: &corsdv1.PutBucketCorsRequest_Json{Json: `{"CORSRules":[{"ID":"web","AllowedOrigins":["https://app.example.com"],"AllowedMethods":["GET"]}]}`}}); err != nil {
		t.Fatalf("PutBucketCors: %v", err)
	}
	authz := authv3.NewAuthorizationClient(conn)
	check := func(method string, headers map[string]string) *authv3.CheckResponse {
		t.Helper()
		resp, err := authz.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: method, Host: "photos.s3.example.com", Path: "/cat.jpg?x=1", Headers: headers}}}})
		if err != nil {
			t.Fatalf("Check %s: %v", method, err)
		}
		return resp
	}
	cases := []struct {
		name       string
		method     string
		headers    map[string]string
		wantRPC    int32 // google.rpc.Code
		wantHTTP   int32 // denied_response status, 0 for OK
		wantOrigin string
	}{
		{"allowed preflight is answered by Envoy with 200", "OPTIONS",
			map[string]string{"origin": "https://app.example.com", "access-control-request-method": "GET"}, 7, 200, "https://app.example.com"},
		{"refused preflight is answered by Envoy with 403", "OPTIONS",
			map[string]string{"origin": "https://evil.example.com", "access-control-request-method": "GET"}, 7, 403, ""},
		{"actual request passes with the CORS headers", "GET",
			map[string]string{"origin": "https://app.example.com"}, 0, 0, "https://app.example.com"},
		{"non-CORS request passes untouched", "GET", nil, 0, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := check(tc.method, tc.headers)
			if resp.GetStatus().GetCode() != tc.wantRPC || int32(resp.GetDeniedResponse().GetStatus().GetCode()) != tc.wantHTTP {
				t.Fatalf("got rpc code %d, http %d; want %d, %d\n%v", resp.GetStatus().GetCode(),
					resp.GetDeniedResponse().GetStatus().GetCode(), tc.wantRPC, tc.wantHTTP, resp)
			}
			hs := resp.GetDeniedResponse().GetHeaders()
			if resp.GetOkResponse() != nil {
				hs = resp.GetOkResponse().GetResponseHeadersToAdd()
			}
			origin := ""
			for _, h := range hs {
				if h.GetHeader().GetKey() == "Access-Control-Allow-Origin" {
					origin = h.GetHeader().GetValue()
				}
			}
			if origin != tc.wantOrigin {
				t.Fatalf("Access-Control-Allow-Origin %q, want %q\n%v", origin, tc.wantOrigin, resp)
			}
			if tc.headers != nil && resp.GetDynamicMetadata().GetFields()[extauthz.MetadataDecisionID].GetStringValue() == "" {
				t.Fatalf("no decision_id in dynamic_metadata: %v", resp)
			}
		})
	}
	// Decisions made for Envoy are counted like any other.
	_, metrics := httpGet(t, httpClient(), "http://"+s.HTTPAddr+"/metrics")
	if !strings.Contains(metrics, `corsd_decisions_total{kind="preflight",transport="envoy",verdict="allowed"}`) {
		t.Fatalf("ext_authz decisions are not in corsd_decisions_total")
	}
}
