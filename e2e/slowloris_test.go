package e2e

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Slow clients that trickle their headers hold only their own connections:
// the server keeps answering others, and drops each trickler once
// server.read_header_timeout has passed.
func TestSlowlorisHoldsOnlyItsOwnConnections(t *testing.T) {
	const trickling = 64
	reg := startRegistry(t, registryOptions{
		NoWaitReady: true,
		Env:         []string{"MOONBIT_REGISTRY_SERVER_READ_HEADER_TIMEOUT=2s"},
	})
	addr := strings.TrimPrefix(reg.URL, "http://")

	conns := make([]net.Conn, 0, trickling)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range trickling {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// A request line and one header, never the blank line that ends them.
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}

	// Others are served meanwhile, promptly.
	client := &http.Client{Timeout: 5 * time.Second}
	for range 5 {
		start := time.Now()
		resp, err := client.Get(reg.URL + "/healthz")
		if err != nil {
			t.Fatalf("a normal request while %d clients trickle: %v", trickling, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || time.Since(start) > 2*time.Second {
			t.Fatalf("healthz: %d after %v", resp.StatusCode, time.Since(start))
		}
	}

	// Every trickler is cut off after the header timeout: reading sees the
	// server close (EOF, perhaps after a 408), well before our own deadline.
	deadline := time.Now().Add(15 * time.Second)
	for i, c := range conns {
		c.SetReadDeadline(deadline)
		b, err := io.ReadAll(c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("connection %d still open after 15s (read %q)", i, b)
		}
		if len(b) > 0 && !strings.Contains(string(b), "408") && !strings.Contains(string(b), "400") {
			t.Errorf("connection %d got %q, want a close (or 408/400)", i, b)
		}
	}
}
