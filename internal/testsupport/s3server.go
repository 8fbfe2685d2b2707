package testsupport

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// VersitygwVersion is the S3 server the tests run: versitygw, built from
// the Go module proxy by .ci/tools.sh (which names the same version) into
// the user cache directory.
const VersitygwVersion = "v1.8.0"

// S3Server is a real S3 server (versitygw over a directory) on a free
// loopback port, for one test.
type S3Server struct {
	Endpoint  string // http://127.0.0.1:PORT
	AccessKey string
	SecretKey string
	Region    string
	Dir       string // the gateway's root; each subdirectory is a bucket
	cmd       *exec.Cmd
	done      chan struct{}
	log       *LogBuffer
}

// VersitygwPath finds the versitygw binary: $MOONBIT_REGISTRY_VERSITYGW,
// the cache directory .ci/tools.sh builds it into, or PATH.
func VersitygwPath() (string, error) {
	if p := os.Getenv("MOONBIT_REGISTRY_VERSITYGW"); p != "" {
		return p, nil
	}
	if cache, err := os.UserCacheDir(); err == nil {
		p := filepath.Join(cache, "moonbit-registry", "tools", "versitygw-"+VersitygwVersion, "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("versitygw %s not found: run `bash .ci/tools.sh` (builds it from the Go module proxy, about 10 minutes the first time) or set MOONBIT_REGISTRY_VERSITYGW", VersitygwVersion)
}

// StartS3 starts versitygw with the given buckets and stops it at cleanup.
// The credentials are also set in the test's environment
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION), as the registry
// reads them, with shared AWS files pointed away from the user's.
func StartS3(t testing.TB, buckets ...string) *S3Server {
	t.Helper()
	bin, err := VersitygwPath()
	if err != nil {
		MissingTool(t, err.Error())
	}
	s := &S3Server{AccessKey: "registry-test", SecretKey: "registry-test-secret", Region: "us-east-1", Dir: t.TempDir(), log: &LogBuffer{}}
	for _, b := range buckets {
		if err := os.Mkdir(filepath.Join(s.Dir, b), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // versitygw binds it itself; a race with another process is unlikely and fails loudly
	s.Endpoint = "http://" + addr
	s.cmd = exec.Command(bin, "--access", s.AccessKey, "--secret", s.SecretKey, "--region", s.Region,
		"--port", addr, "--quiet", "posix", s.Dir)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.done = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(s.Stop)
	if err := WaitListening(addr, s.done, 20*time.Second); err != nil {
		t.Fatalf("versitygw: %v: %s", err, s.log)
	}
	none := filepath.Join(s.Dir, "no-aws-config") // never the user's ~/.aws
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": s.AccessKey, "AWS_SECRET_ACCESS_KEY": s.SecretKey, "AWS_REGION": s.Region,
		"AWS_CONFIG_FILE": none, "AWS_SHARED_CREDENTIALS_FILE": none, "AWS_EC2_METADATA_DISABLED": "true",
	} {
		t.Setenv(k, v)
	}
	return s
}

// WaitListening waits until something accepts connections on addr, the
// process that should has exited (exited closed), or d has passed.
func WaitListening(addr string, exited <-chan struct{}, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited before listening on " + addr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on %s within %s", addr, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends the server (it is also stopped at cleanup).
func (s *S3Server) Stop() {
	select {
	case <-s.done:
		return
	default:
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

// ObjectFile is where the posix backend keeps an object, to check or
// corrupt it behind the server's back.
func (s *S3Server) ObjectFile(bucket, key string) string {
	return filepath.Join(s.Dir, bucket, filepath.FromSlash(key))
}

// versionIn reports whether script pins version (a consistency check the
// tests of this package make).
func versionIn(script []byte, version string) bool {
	return bytes.Contains(script, []byte("versitygw@"+version)) || bytes.Contains(script, []byte("VERSITYGW_VERSION="+strconv.Quote(version)))
}
