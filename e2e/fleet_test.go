package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"moonbit-registry/internal/logbuf"
	"moonbit-registry/internal/testsupport"
	"moonbit-registry/internal/testupstream"
)

// fleetSize is how many replicas the fleet tests run behind nginx.
const fleetSize = 3

// fleet is three `serve` processes on one bucket behind a real nginx using
// deploy/nginx-balancer.conf, round robin per request.
type fleet struct {
	srv      *testsupport.S3Server
	replicas []*registry
	URL      string // nginx
}

// unitCommand is the replica command line of deploy/moonbit-registry.service,
// with the binary, the root and the port replaced; and its Environment.
func unitCommand(t *testing.T, root string) (args, env []string) {
	t.Helper()
	unit, err := os.ReadFile("../deploy/moonbit-registry.service")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			args = strings.Fields(v)[1:] // the binary is ours
		}
		if v, ok := strings.CutPrefix(line, "Environment="); ok {
			env = append(env, v)
		}
	}
	if len(args) == 0 {
		t.Fatal("deploy/moonbit-registry.service has no ExecStart")
	}
	for i, a := range args {
		switch {
		case a == "/var/lib/moonbit-registry":
			args[i] = root
		case strings.HasPrefix(a, "127.0.0.1:"):
			args[i] = "127.0.0.1:0"
		}
	}
	return args, env
}

// startFleet starts the replicas and nginx. Each replica syncs the index
// every second, at its own moments, as replicas of a real fleet do.
func startFleet(t *testing.T, up *testupstream.Upstream, extraEnv ...string) *fleet {
	t.Helper()
	f := &fleet{srv: testsupport.StartS3(t, s3Bucket)}
	s3Env(t, f.srv, "fleet/")
	for range fleetSize {
		root := t.TempDir()
		args, env := unitCommand(t, root)
		env = append(env, "MOONBIT_REGISTRY_SERVER_DRAIN_DELAY=0s", "MOONBIT_REGISTRY_STORE_S3_LEASE_TTL=5s",
			"MOONBIT_REGISTRY_INDEX_SYNC_INTERVAL=1s")
		f.replicas = append(f.replicas, startRegistry(t, registryOptions{Root: root, UpstreamURL: up.URL(), Command: args, Env: append(env, extraEnv...)}))
	}
	f.URL = startNginx(t, balancerConf(t, f.replicas))
	return f
}

// balancerConf is deploy/nginx-balancer.conf with the replicas in its
// upstream block.
func balancerConf(t *testing.T, replicas []*registry) []byte {
	t.Helper()
	conf, err := os.ReadFile("../deploy/nginx-balancer.conf")
	if err != nil {
		t.Fatal(err)
	}
	servers := regexp.MustCompile(`(?m)^\s*server 127\.0\.0\.1:\d+;\n`)
	if n := len(servers.FindAll(conf, -1)); n != len(replicas) {
		t.Fatalf("deploy/nginx-balancer.conf lists %d servers, the test runs %d replicas", n, len(replicas))
	}
	var lines strings.Builder
	for _, r := range replicas {
		fmt.Fprintf(&lines, "\t\tserver %s;\n", strings.TrimPrefix(r.URL, "http://"))
	}
	first := true
	return servers.ReplaceAllFunc(conf, func([]byte) []byte {
		if first {
			first = false
			return []byte(lines.String())
		}
		return nil
	})
}

// startNginx runs nginx with conf (a deploy/ file, its servers filled in)
// on a free loopback port instead of its `listen 8080;`, and returns its
// URL.
func startNginx(t *testing.T, conf []byte) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			testsupport.MissingTool(t, "nginx not found (bash .ci/tools.sh installs it with apt-get): "+err.Error())
		}
		bin = "/usr/sbin/nginx"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	listen := regexp.MustCompile(`(?m)^(\s*)listen 8080;`)
	if !listen.Match(conf) {
		t.Fatal("the nginx configuration has no `listen 8080;`")
	}
	conf = listen.ReplaceAll(conf, []byte("${1}listen "+addr+";"))
	dir := t.TempDir()
	for _, d := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	// Temporary files in the test's directory, not /var/lib/nginx.
	conf = bytes.Replace(conf, []byte("http {"), []byte("http {\n\tclient_body_temp_path "+dir+"/body;\n\tproxy_temp_path "+dir+"/proxy;\n\tfastcgi_temp_path "+dir+"/fastcgi;\n\tuwsgi_temp_path "+dir+"/uwsgi;\n\tscgi_temp_path "+dir+"/scgi;"), 1)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", path, "-e", filepath.Join(dir, "error.log"),
		"-g", "daemon off; pid "+filepath.Join(dir, "nginx.pid")+"; user "+currentUser()+";")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	if err := testsupport.WaitListening(addr, done, 20*time.Second); err != nil {
		errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		t.Fatalf("nginx: %v: %s\n%s", err, out.String(), errLog)
	}
	return "http://" + addr
}

// currentUser names the user nginx's workers run as: this one.
func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "nobody"
}

// replicaOf is the replica whose process has pid.
func (f *fleet) replicaOf(pid int) *registry {
	for _, r := range f.replicas {
		if r.cmd.Process.Pid == pid {
			return r
		}
	}
	return nil
}

// fetchAll sends n requests at once for u through the balancer, retrying
// like moon (408, 429, 5xx up to 3 times), and returns the bodies and
// errors.
func fetchAll(ctx context.Context, c *moonClient, u string, n int) ([][]byte, []error) {
	bodies := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bodies[i], errs[i] = c.get(ctx, u)
		}()
	}
	wg.Wait()
	return bodies, errs
}

// TestFleetOneFetchAndTakeover: 100 concurrent misses for one archive,
// spread over three replicas by nginx, cost upstream one request; a
// replica killed with SIGKILL while it holds an archive's lease is taken
// over and every client still gets the right bytes.
func TestFleetOneFetchAndTakeover(t *testing.T) {
	ctx := t.Context()
	up := startUpstream(t, testupstream.Options{Archives: []testupstream.ModuleVersion{testupstream.EveryVersion(cliModule)}, ArchiveSize: 256 << 10})
	versions := up.Index.Versions(cliModule)
	f := startFleet(t, up)
	c := newMoonClient(t, f.URL)
	if err := c.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}

	// 100 misses at once; upstream slow enough for all to pile up.
	miss := versions[0]
	path := "/user/" + cliModule + "/" + miss + ".zip"
	up.Faults.Delay(500*time.Millisecond, testupstream.OnPrefix(path))
	bodies, errs := fetchAll(ctx, c, c.archiveURL(cliModule, miss), 100)
	for i := range bodies {
		if errs[i] != nil || !bytes.Equal(bodies[i], up.Downloads.Archive(cliModule, miss)) {
			t.Fatalf("client %d: %v", i, errs[i])
		}
	}
	if n := up.Count(path); n != 1 {
		t.Errorf("100 concurrent misses over %d replicas cost upstream %d requests, want 1", fleetSize, n)
	}
	// The access log is flushed every second: wait that long for it.
	served := 0
	for deadline := time.Now().Add(5 * time.Second); served < fleetSize && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		served = 0
		for _, r := range f.replicas {
			if strings.Contains(r.Logs(), `"path":"/user/`+url.QueryEscape(cliModule+"/"+miss)+`.zip"`) {
				served++
			}
		}
	}
	if served != fleetSize {
		t.Errorf("the requests reached %d of the %d replicas, want all", served, fleetSize)
	}
	t.Logf("100 concurrent misses over %d replicas: %d upstream request(s)", fleetSize, up.Count(path))
	// Each replica's metrics tell its part: one fetch for the fleet in all,
	// the rest waited; requests to the bucket are timed.
	var fetchesTotal, waits float64
	for _, r := range f.replicas {
		m := scrape(t, r.URL+"/metrics")
		fetchesTotal += m[`moonbit_registry_upstream_fetches_total{outcome="ok"}`]
		waits += m["moonbit_registry_fleet_lease_waits_total"]
		if m[`moonbit_registry_store_request_duration_seconds_count{op="get",result="ok"}`] == 0 {
			t.Errorf("replica %s: no timed store requests in its metrics", r.URL)
		}
	}
	if fetchesTotal != 1 || waits < 1 {
		t.Errorf("metrics: %v fleet fetches, %v lease waits over the replicas; want 1 and some", fetchesTotal, waits)
	}

	// The lease holder dies mid-fetch.
	victim := versions[1]
	vpath := "/user/" + cliModule + "/" + victim + ".zip"
	up.Faults.Hang(testupstream.OnPrefix(vpath))
	type result struct {
		body []byte
		err  error
	}
	results := make(chan result, 30)
	for range 30 {
		go func() {
			b, err := c.get(ctx, c.archiveURL(cliModule, victim))
			results <- result{b, err}
		}()
	}
	leaseFile := f.srv.ObjectFile(s3Bucket, "fleet/leases/"+url.PathEscape(cliModule+"@"+victim))
	var holder *registry
	deadline := time.Now().Add(20 * time.Second)
	for holder == nil && time.Now().Before(deadline) {
		if data, err := os.ReadFile(leaseFile); err == nil && up.Count(vpath) > 0 {
			var le struct{ Holder string }
			json.Unmarshal(data, &le)
			_, pidStr, _ := strings.Cut(le.Holder, ":")
			pid, _ := strconv.Atoi(pidStr)
			holder = f.replicaOf(pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if holder == nil {
		t.Fatal("no replica took the lease within 20s")
	}
	holder.Kill()
	killed := time.Now()
	up.Faults.Clear()
	for range 30 {
		r := <-results
		if r.err != nil || !bytes.Equal(r.body, up.Downloads.Archive(cliModule, victim)) {
			t.Errorf("client after the holder was killed: %v", r.err)
		}
	}
	t.Logf("lease holder killed: every client served %s later (lease TTL 5s)", time.Since(killed).Round(10*time.Millisecond))
	takeovers := 0
	for _, r := range f.replicas {
		if r != holder && strings.Contains(r.Logs(), "took over an expired lease") {
			takeovers++
		}
	}
	if takeovers != 1 {
		t.Errorf("%d replicas took over the lease, want 1", takeovers)
	}
	if n := up.Count(vpath); n != 2 {
		t.Errorf("upstream saw %d requests for the archive, want 2 (the killed holder's, the taker's)", n)
	}
	// Waiting for a busy lease never turned into an error answer (the
	// client's and nginx's retries would hide one).
	time.Sleep(logbuf.FlushEvery + 500*time.Millisecond) // the access log's flush
	for _, r := range f.replicas {
		if r == holder {
			continue
		}
		if bad := serverErrors.FindAllString(r.Logs(), 3); len(bad) > 0 {
			t.Errorf("replica %s answered with server errors: %q", r.URL, bad)
		}
	}
}

// serverErrors finds 5xx answers to archive requests in a replica's
// access log.
var serverErrors = regexp.MustCompile(`"path":"/user/[^"]*","status":5\d\d`)

// TestFleetMovingClient: a client whose every request may land on another
// replica pulls after each upstream publish: every pull fast-forwards (no
// re-clone, never backwards), and it sees each new version.
func TestFleetMovingClient(t *testing.T) {
	ctx := t.Context()
	up := startUpstream(t, testupstream.Options{})
	f := startFleet(t, up)
	c := newMoonClient(t, f.URL)
	if err := c.CloneIndex(ctx); err != nil {
		t.Fatal(err)
	}
	head := func() string {
		out, err := c.git(ctx, "-C", c.indexDir, "rev-parse", "HEAD")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	prev := head()
	const publishes = 8
	pulls, forwards := 0, 0
	for i := range publishes {
		version := fmt.Sprintf("0.%d.0", i+1)
		if err := up.Index.AddVersion(ctx, "fleettest/moving", version, nil); err != nil {
			t.Fatal(err)
		}
		// Pull until the client sees the new version (replicas sync every
		// second); each pull must succeed and move forward or stay.
		seen := false
		for deadline := time.Now().Add(20 * time.Second); !seen && time.Now().Before(deadline); {
			pulls++
			if err := c.PullIndex(ctx); err != nil {
				t.Fatalf("pull %d (after publishing %s) failed, the client would re-clone: %v", pulls, version, err)
			}
			cur := head()
			if cur != prev {
				if _, err := c.git(ctx, "-C", c.indexDir, "merge-base", "--is-ancestor", prev, cur); err != nil {
					t.Fatalf("pull %d went from %s to %s, not a fast-forward", pulls, prev, cur)
				}
				forwards++
				prev = cur
			}
			vs, _ := c.Versions("fleettest/moving")
			seen = len(vs) == i+1
			if !seen {
				time.Sleep(200 * time.Millisecond)
			}
		}
		if !seen {
			t.Fatalf("the client never saw %s within 20s", version)
		}
	}
	t.Logf("%d publishes, %d pulls, %d fast-forwards, no re-clone", publishes, pulls, forwards)
}

// TestFleetBalancerServes is a sanity check the fleet tests rely on: nginx reaches a
// replica.
func TestFleetBalancerServes(t *testing.T) {
	up := startUpstream(t, testupstream.Options{})
	f := startFleet(t, up)
	if res := arcFetch(t, http.MethodGet, f.URL+"/readyz", nil); res.status != http.StatusOK {
		t.Fatalf("/readyz through nginx: %d", res.status)
	}
}

// TestFleetCatchUpFromBundle: a replica that cannot reach upstream serves
// the fleet's index from the bundles another replica stores, and catches
// up before answering a pull; when it cannot (the bundle is gone) it
// answers 503, never an older index.
func TestFleetCatchUpFromBundle(t *testing.T) {
	ctx := t.Context()
	srv := testsupport.StartS3(t, s3Bucket)
	s3Env(t, srv, "cu/")
	up := startUpstream(t, testupstream.Options{})
	// This replica moves the tip, syncing every second.
	startRegistry(t, registryOptions{UpstreamURL: up.URL(), Env: []string{"MOONBIT_REGISTRY_INDEX_SYNC_INTERVAL=1s"}})
	cut := startRegistry(t, registryOptions{}) // upstream: a closed port
	tipFile := srv.ObjectFile(s3Bucket, "cu/index/tip")
	tip := func() string {
		data, _ := os.ReadFile(tipFile)
		var tb struct{ Commit string }
		json.Unmarshal(data, &tb)
		return tb.Commit
	}
	waitTipMoves := func(from string) string {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if cur := tip(); cur != "" && cur != from {
				return cur
			}
		}
		t.Fatalf("the fleet's tip did not move from %q within 20s", from)
		return ""
	}

	c := newMoonClient(t, cut.URL)
	if err := c.CloneIndex(ctx); err != nil {
		t.Fatalf("clone from the replica without upstream: %v", err)
	}
	first := tip()
	if out, _ := c.git(ctx, "-C", c.indexDir, "rev-parse", "HEAD"); strings.TrimSpace(out) != first {
		t.Errorf("cloned %s, the fleet's tip is %s", strings.TrimSpace(out), first)
	}

	if err := up.Index.AddVersion(ctx, "fleettest/bundled", "0.1.0", nil); err != nil {
		t.Fatal(err)
	}
	second := waitTipMoves(first)
	if err := c.PullIndex(ctx); err != nil {
		t.Fatalf("pull from the replica without upstream after the tip moved: %v", err)
	}
	if vs, _ := c.Versions("fleettest/bundled"); len(vs) != 1 {
		t.Errorf("after the pull the client has %q, want the version published upstream", vs)
	}

	if err := up.Index.AddVersion(ctx, "fleettest/bundled", "0.2.0", nil); err != nil {
		t.Fatal(err)
	}
	third := waitTipMoves(second)
	if err := os.Remove(srv.ObjectFile(s3Bucket, "cu/index/bundles/"+third+".bundle")); err != nil {
		t.Fatal(err)
	}
	if res := arcFetch(t, http.MethodGet, cut.URL+"/git/index/info/refs?service=git-upload-pack", nil); res.status != http.StatusServiceUnavailable {
		t.Errorf("a replica that cannot catch up answered %d, want 503", res.status)
	}
	if err := c.PullIndex(ctx); err == nil {
		t.Error("a pull from a replica behind the fleet succeeded")
	}
}
