package streamstest

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// A port taken between pickPort and redis-server's bind must be reported as
// errPortInUse, so that launchNode retries on another port.
func TestStartReportsPortInUse(t *testing.T) {
	bin := redisServer(t)
	for _, tc := range []struct {
		name    string
		cluster bool
		offset  int
	}{
		{"client port", false, 0},
		{"cluster bus port", true, clusterBusOffset},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port, err := pickPort(tc.cluster)
			if err != nil {
				t.Fatal(err)
			}
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+tc.offset)))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			n := &node{bin: bin, cluster: tc.cluster, port: port, dir: t.TempDir()}
			if err := n.start(); !errors.Is(err, errPortInUse) {
				n.kill()
				t.Fatalf("start on a taken port: got %v, want errPortInUse", err)
			}
		})
	}
}

// A redis-server that loses the race for its port must not be mistaken for
// the server that won it.
func TestStartIgnoresAnotherServerOnThePort(t *testing.T) {
	bin := redisServer(t)
	other := NewSingle(t)
	port, err := strconv.Atoi(strings.TrimPrefix(other.Addr(), "127.0.0.1:"))
	if err != nil {
		t.Fatal(err)
	}
	n := &node{bin: bin, port: port, dir: t.TempDir()}
	if err := n.start(); !errors.Is(err, errPortInUse) {
		n.kill()
		t.Fatalf("start on another server's port: got %v, want errPortInUse", err)
	}
}

func TestConfQuote(t *testing.T) {
	if got, want := confQuote(`a "b" \c`), `"a \"b\" \\c"`; got != want {
		t.Fatalf("confQuote = %s, want %s", got, want)
	}
}

func TestMissingBinaryNamesInstallCommand(t *testing.T) {
	t.Setenv(EnvRedisServer, "/nonexistent/redis-server")
	if _, err := findRedisServer(); err == nil || !strings.Contains(err.Error(), EnvRedisServer) {
		t.Fatalf("bad %s: got %v", EnvRedisServer, err)
	}
	os.Unsetenv(EnvRedisServer) // t.Setenv restores it
	t.Setenv("PATH", t.TempDir())
	_, err := findRedisServer()
	if err == nil || !strings.Contains(err.Error(), InstallHint) || !strings.Contains(err.Error(), "make test") {
		t.Fatalf("error %v does not name %q and make test", err, InstallHint)
	}
}
