package streamstest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// startTimeout bounds how long a freshly started redis-server may take
	// to answer PING.
	startTimeout = 10 * time.Second
	// stopTimeout bounds a graceful shutdown before the process is killed.
	// Redis 7 masters may wait up to shutdown-timeout (10 s) for replicas.
	stopTimeout = 15 * time.Second
	// startAttempts is how many fresh ports a new node tries before giving up.
	startAttempts = 20
	// clusterBusOffset is the distance between a node's port and its cluster
	// bus port, as fixed by Redis.
	clusterBusOffset = 10000

	// Ports are drawn from [portLow, portHigh) so that the client port and
	// the cluster bus port (port+10000) both stay below the kernel's usual
	// ephemeral range (32768 and up). Outgoing connections are then never
	// assigned a port a stopped server wants back on restart.
	portLow  = 12000
	portHigh = 22700
)

// errPortInUse reports that redis-server could not bind its client or
// cluster bus port.
var errPortInUse = errors.New("address already in use")

// node is one redis-server process with a fixed directory. Its port is fixed
// once it has started successfully, so a restart comes back at the same
// address with the same data.
type node struct {
	bin      string
	cluster  bool
	password string
	extra    []string
	// sentinel, when not nil, makes the node a Redis Sentinel (redis-server
	// --sentinel) configured with these directives instead of a data node.
	sentinel []string

	mu   sync.Mutex
	port int
	dir  string
	id   string // cluster node ID, stable across restarts (nodes.conf)
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited

	logStart [2]int64 // sizes of stdout.log and redis.log when cmd started
}

func (n *node) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port)) }

// launchNode creates a node in a new temporary directory on a fresh port and
// starts it, trying new ports while the chosen one turns out to be taken.
func launchNode(bin string, cluster bool, o options) (*node, error) {
	return launch(func(dir string, port int) *node {
		return &node{bin: bin, cluster: cluster, password: o.password, extra: o.directives, port: port, dir: dir}
	}, cluster)
}

// launch creates the node that mk describes in a new temporary directory on
// a fresh port and starts it, trying new ports while the chosen one turns
// out to be taken.
func launch(mk func(dir string, port int) *node, cluster bool) (*node, error) {
	sweepOnce.Do(sweepStaleDirs)
	var lastErr error
	for attempt := 0; attempt < startAttempts; attempt++ {
		dir, err := newNodeDir()
		if err != nil {
			return nil, err
		}
		port, err := pickPort(cluster)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		n := mk(dir, port)
		err = n.start()
		if err == nil {
			return n, nil
		}
		os.RemoveAll(dir)
		lastErr = err
		if !errors.Is(err, errPortInUse) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("no free port after %d attempts: %w", startAttempts, lastErr)
}

// dirPrefix starts the name of every node directory under os.TempDir.
const dirPrefix = "celeroot-redis-"

// ownerFile, in a node directory, holds the pid of the test binary that
// created it.
const ownerFile = "owner.pid"

var sweepOnce sync.Once

func newNodeDir() (string, error) {
	dir, err := os.MkdirTemp("", dirPrefix+"*")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// sweepStaleDirs removes node directories left behind by test binaries that
// were killed before they could clean up (their servers died with them).
func sweepStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // being created right now, or not the harness's
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && !processAlive(pid) {
			os.RemoveAll(dir)
		}
	}
}

var (
	portsMu  sync.Mutex
	portsOut = map[int]bool{} // ports handed out in this binary, never reused
)

// pickPort returns a port that is free on 127.0.0.1 right now (and, for
// cluster nodes, whose bus port is free too) and that this binary has not
// handed out before. Another process may still take it before redis-server
// binds it; the caller retries on errPortInUse.
func pickPort(cluster bool) (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for i := 0; i < 1000; i++ {
		p := portLow + rand.IntN(portHigh-portLow)
		if portsOut[p] || !portFree(p) || (cluster && !portFree(p+clusterBusOffset)) {
			continue
		}
		portsOut[p] = true
		return p, nil
	}
	// The range is crowded; fall back to any port the kernel offers.
	for i := 0; i < 1000; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if portsOut[p] || (cluster && (p+clusterBusOffset > 65535 || !portFree(p+clusterBusOffset))) {
			continue
		}
		portsOut[p] = true
		return p, nil
	}
	return 0, errors.New("streamstest: no free TCP port on 127.0.0.1")
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func (n *node) logPath() string    { return filepath.Join(n.dir, "redis.log") }
func (n *node) stdoutPath() string { return filepath.Join(n.dir, "stdout.log") }
func (n *node) confPath() string   { return filepath.Join(n.dir, "redis.conf") }

func (n *node) config() string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("bind 127.0.0.1")
	line("port %d", n.port)
	line("dir %s", confQuote(n.dir))
	line("logfile %s", confQuote(n.logPath()))
	line("daemonize no")
	line("protected-mode no")
	if n.sentinel != nil {
		for _, d := range n.sentinel {
			line("%s", d)
		}
		return b.String()
	}
	line(`save ""`)
	line("appendonly yes")
	line("appendfsync everysec")
	line("enable-debug-command local")
	// Replicas sync at once instead of waiting for more replicas to join
	// a diskless transfer (5 s by default).
	line("repl-diskless-sync-delay 0")
	if n.cluster {
		line("cluster-enabled yes")
		line("cluster-config-file nodes.conf")
		line("cluster-node-timeout 2000")
		// CLUSTER SLOTS hides replicas whose replication offset is still 0,
		// and with no writes only the master's pings to its replicas move
		// the offset: ping every second, not every 10 s, so new replicas
		// show up promptly.
		line("repl-ping-replica-period 1")
	}
	if n.password != "" {
		line("requirepass %s", confQuote(n.password))
		line("masterauth %s", confQuote(n.password))
	}
	for _, d := range n.extra {
		line("%s", d)
	}
	return b.String()
}

// confQuote quotes s for a redis.conf argument.
func confQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}

// restart starts a node that ran before, on its old port. Another process
// may hold the port for a moment (a port check by a parallel test binary),
// so a bind failure is retried for a few seconds.
func (n *node) restart() error {
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		if err = n.start(); !errors.Is(err, errPortInUse) {
			return err
		}
		time.Sleep(300 * time.Millisecond)
	}
	return err
}

// start runs redis-server and waits until it answers PING. The node must not
// be running.
func (n *node) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.running() {
		return fmt.Errorf("redis %s is already running", n.addr())
	}
	// A Sentinel rewrites its own configuration file with what it learnt
	// (replicas, other sentinels, epochs): a restart keeps that file.
	if _, err := os.Stat(n.confPath()); n.sentinel == nil || err != nil {
		if err := os.WriteFile(n.confPath(), []byte(n.config()), 0o600); err != nil {
			return err
		}
	}
	out, err := os.OpenFile(n.stdoutPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	n.logStart = [2]int64{fileSize(n.stdoutPath()), fileSize(n.logPath())}
	args := []string{n.confPath()}
	if n.sentinel != nil {
		args = append(args, "--sentinel")
	}
	cmd := exec.Command(n.bin, args...)
	cmd.Dir = n.dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = sysProcAttr()
	err = spawn(cmd)
	out.Close()
	if err != nil {
		return fmt.Errorf("start %s: %w", n.bin, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	n.cmd, n.done = cmd, done

	if err := n.waitReady(startTimeout); err != nil {
		n.killLocked()
		return err
	}
	return nil
}

func (n *node) running() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// isRunning reports whether the node's process is alive.
func (n *node) isRunning() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.running()
}

func (n *node) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		select {
		case <-n.done:
			tail := n.logTail()
			if strings.Contains(n.logSinceStart(), "Address already in use") {
				return fmt.Errorf("redis %s: %w\n%s", n.addr(), errPortInUse, tail)
			}
			return fmt.Errorf("redis-server %s exited during startup (%v); server log:\n%s", n.addr(), n.cmd.ProcessState, tail)
		default:
		}
		if lastErr = n.ping(n.cmd.Process.Pid); lastErr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server %s did not answer PING within %v (last error: %v); server log:\n%s",
				n.addr(), timeout, lastErr, n.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping speaks just enough RESP to AUTH, PING and read INFO server. It
// succeeds once the server accepts commands (not while it is still loading
// its AOF) and the server answering is the process the node started, not
// another one that won the race for the port.
func (n *node) ping(pid int) error {
	c, err := net.DialTimeout("tcp", n.addr(), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	r := bufio.NewReader(c)
	if n.password != "" {
		if err := respCall(c, r, "+OK", "AUTH", n.password); err != nil {
			return err
		}
	}
	if err := respCall(c, r, "+PONG", "PING"); err != nil {
		return err
	}
	info, err := respBulk(c, r, "INFO", "server")
	if err != nil {
		return err
	}
	if want := "process_id:" + strconv.Itoa(pid) + "\r\n"; !strings.Contains(info, want) {
		return fmt.Errorf("%s is served by another process, not pid %d", n.addr(), pid)
	}
	return nil
}

func respWrite(w io.Writer, args ...string) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	_, err := w.Write(b.Bytes())
	return err
}

func respLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

// respCall sends a command and expects the simple reply want.
func respCall(w io.Writer, r *bufio.Reader, want string, args ...string) error {
	if err := respWrite(w, args...); err != nil {
		return err
	}
	line, err := respLine(r)
	if err != nil {
		return err
	}
	if line != want {
		return fmt.Errorf("%s: %s", args[0], line)
	}
	return nil
}

// respBulk sends a command and returns its bulk string reply (RESP2 "$" or
// RESP3 verbatim "=").
func respBulk(w io.Writer, r *bufio.Reader, args ...string) (string, error) {
	if err := respWrite(w, args...); err != nil {
		return "", err
	}
	line, err := respLine(r)
	if err != nil {
		return "", err
	}
	if len(line) < 2 || (line[0] != '$' && line[0] != '=') {
		return "", fmt.Errorf("%s: %s", args[0], line)
	}
	size, err := strconv.Atoi(line[1:])
	if err != nil || size < 0 {
		return "", fmt.Errorf("%s: bad reply %q", args[0], line)
	}
	buf := make([]byte, size+2)
	if _, err := io.ReadFull(r, buf); err != nil {
		return "", err
	}
	return string(buf[:size]), nil
}

// stop shuts the node down gracefully with SIGTERM (Redis then fsyncs its
// AOF), killing it if it takes longer than stopTimeout.
func (n *node) stop() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running() {
		return nil
	}
	signalProcess(n.cmd.Process.Pid, false)
	select {
	case <-n.done:
		killGroup(n.cmd.Process.Pid) // forked AOF rewrite children, if any
		return nil
	case <-time.After(stopTimeout):
	}
	n.killLocked()
	return fmt.Errorf("redis %s ignored SIGTERM for %v and was killed; server log:\n%s", n.addr(), stopTimeout, n.logTail())
}

// kill ends the node with SIGKILL, as a crash would.
func (n *node) kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.killLocked()
}

func (n *node) killLocked() {
	if n.cmd == nil {
		return
	}
	killGroup(n.cmd.Process.Pid)
	<-n.done
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logSinceStart returns what the current process has logged so far.
func (n *node) logSinceStart() string {
	var b strings.Builder
	for i, p := range []string{n.stdoutPath(), n.logPath()} {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if off := n.logStart[i]; off <= int64(len(data)) {
			data = data[off:]
		}
		b.Write(data)
	}
	return b.String()
}

// logTail returns the last lines of the server log and of its stdout/stderr.
func (n *node) logTail() string {
	var b strings.Builder
	for _, p := range []string{n.stdoutPath(), n.logPath()} {
		data, err := os.ReadFile(p)
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 25 {
			lines = lines[len(lines)-25:]
		}
		fmt.Fprintf(&b, "--- %s (tail)\n%s\n", p, strings.Join(lines, "\n"))
	}
	if b.Len() == 0 {
		return "(server log is empty)"
	}
	return b.String()
}
