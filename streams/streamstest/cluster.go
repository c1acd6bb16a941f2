package streamstest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterSlots is the number of hash slots in a Redis Cluster.
const clusterSlots = 16384

// clusterWaitTimeout bounds how long the harness waits for a cluster to form
// or to converge again after nodes were stopped or started.
const clusterWaitTimeout = 20 * time.Second

// startCluster launches masters*(1+replicas) cluster-enabled nodes and forms
// a cluster of them with CLUSTER MEET, ADDSLOTSRANGE and REPLICATE.
func startCluster(bin, name string, o options, shared bool) (*Server, error) {
	total := o.masters * (1 + o.replicas)
	nodes := make([]*node, total)
	errs := make([]error, total)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = launchNode(bin, true, o)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		destroyNodes(slices.DeleteFunc(nodes, func(n *node) bool { return n == nil }))
		return nil, err
	}
	s := &Server{
		Name:     name,
		Cluster:  true,
		Password: o.password,
		shared:   shared,
		masters:  o.masters,
		replicas: o.replicas,
		nodes:    nodes,
	}
	for _, n := range nodes {
		s.Addrs = append(s.Addrs, n.addr())
	}
	s.URL = buildURL("redis+cluster", o.password, s.Addrs)
	if err := s.form(); err != nil {
		destroyNodes(nodes)
		return nil, fmt.Errorf("forming cluster %v: %v%s", s.Addrs, err, sprintNodes(nodes))
	}
	register(s)
	return s, nil
}

// form joins the nodes into one cluster: masters s.nodes[:s.masters] get an
// even share of the slots each, the rest become replicas, s.replicas per
// master in order.
func (s *Server) form() error {
	ctx, cancel := withTimeout(clusterWaitTimeout)
	defer cancel()
	clients := make([]*redis.Client, len(s.nodes))
	for i, n := range s.nodes {
		clients[i] = s.adminClient(n.addr())
		defer clients[i].Close()
		id, err := clients[i].ClusterMyID(ctx).Result()
		if err != nil {
			return fmt.Errorf("CLUSTER MYID on %s: %w", n.addr(), err)
		}
		n.id = id
		// Distinct config epochs up front spare the cluster the epoch
		// collision resolution it would otherwise go through.
		if err := clients[i].Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err(); err != nil {
			return fmt.Errorf("CLUSTER SET-CONFIG-EPOCH on %s: %w", n.addr(), err)
		}
	}
	for m := 0; m < s.masters; m++ {
		lo, hi := m*clusterSlots/s.masters, (m+1)*clusterSlots/s.masters-1
		if err := clients[m].ClusterAddSlotsRange(ctx, lo, hi).Err(); err != nil {
			return fmt.Errorf("CLUSTER ADDSLOTSRANGE %d %d on %s: %w", lo, hi, s.nodes[m].addr(), err)
		}
	}
	for _, n := range s.nodes[1:] {
		if err := clients[0].ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(n.port)).Err(); err != nil {
			return fmt.Errorf("CLUSTER MEET %s from %s: %w", n.addr(), s.nodes[0].addr(), err)
		}
	}
	if err := s.waitMet(ctx, clients); err != nil {
		return err
	}
	for i, n := range s.nodes[s.masters:] {
		master := s.nodes[i/s.replicas]
		if err := clients[s.masters+i].ClusterReplicate(ctx, master.id).Err(); err != nil {
			return fmt.Errorf("CLUSTER REPLICATE %s on %s: %w", master.addr(), n.addr(), err)
		}
	}
	return s.waitHealthy(clusterWaitTimeout, true)
}

// waitMet waits until every node knows every other node with a live link
// and no handshake in progress.
func (s *Server) waitMet(ctx context.Context, clients []*redis.Client) error {
	var why string
	for {
		why = ""
		for i, c := range clients {
			out, err := c.ClusterNodes(ctx).Result()
			if err != nil {
				why = fmt.Sprintf("CLUSTER NODES on %s: %v", s.nodes[i].addr(), err)
				break
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != len(s.nodes) {
				why = fmt.Sprintf("%s knows %d of %d nodes", s.nodes[i].addr(), len(lines), len(s.nodes))
				break
			}
			for _, l := range lines {
				f := strings.Fields(l)
				if len(f) < 8 || strings.Contains(f[2], "handshake") || strings.Contains(f[2], "noaddr") || f[7] != "connected" {
					why = fmt.Sprintf("%s sees %q", s.nodes[i].addr(), l)
					break
				}
			}
			if why != "" {
				break
			}
		}
		if why == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nodes did not meet: %s", why)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WaitHealthy waits until the server serves requests: for a single node,
// until it answers PING; for a cluster, until every running node reports
// cluster_state:ok, all running nodes report the same slot map covering all
// 16384 slots, and every running replica has its replication link up; for a
// Sentinel-managed deployment, until the running sentinels agree on a
// master that serves as one and every running replica replicates from it.
// Use it after stopping, killing or starting nodes.
func (s *Server) WaitHealthy(tb testing.TB) {
	tb.Helper()
	var err error
	switch {
	case s.Sentinel:
		err = s.waitSentinels(sentinelWaitTimeout, "", false)
	case s.Cluster:
		err = s.waitHealthy(clusterWaitTimeout, false)
	default:
		n := s.nodes[0]
		n.mu.Lock()
		if n.running() {
			err = n.waitReady(startTimeout)
		} else {
			err = fmt.Errorf("redis %s is not running", n.addr())
		}
		n.mu.Unlock()
	}
	if err != nil {
		tb.Fatalf("streamstest: WaitHealthy: %v", err)
	}
}

// waitHealthy is WaitHealthy for a cluster. With initial set it also
// requires the topology the cluster was created with.
func (s *Server) waitHealthy(timeout time.Duration, initial bool) error {
	deadline := time.Now().Add(timeout)
	for {
		why := s.healthProblem(initial)
		if why == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not healthy after %v: %s", timeout, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// healthProblem returns why the cluster is not healthy, or "" if it is.
func (s *Server) healthProblem(initial bool) string {
	ctx, cancel := withTimeout(5 * time.Second)
	defer cancel()
	var first string
	var firstAddr string
	live := 0
	for _, n := range s.nodes {
		if !n.isRunning() {
			continue
		}
		live++
		c := s.adminClient(n.addr())
		why := func() string {
			defer c.Close()
			info, err := c.ClusterInfo(ctx).Result()
			if err != nil {
				return fmt.Sprintf("CLUSTER INFO on %s: %v", n.addr(), err)
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return fmt.Sprintf("%s: cluster_state is not ok", n.addr())
			}
			//lint:ignore SA1019 go-redis's cluster client routes by CLUSTER SLOTS, so that is the view nodes must agree on.
			slots, err := c.ClusterSlots(ctx).Result()
			if err != nil {
				return fmt.Sprintf("CLUSTER SLOTS on %s: %v", n.addr(), err)
			}
			m, err := slotMap(slots)
			if err != nil {
				return fmt.Sprintf("%s: %v", n.addr(), err)
			}
			if first == "" {
				first, firstAddr = m, n.addr()
			} else if m != first {
				return fmt.Sprintf("slot maps differ: %s has %s, %s has %s", firstAddr, first, n.addr(), m)
			}
			repl, err := c.Info(ctx, "replication").Result()
			if err != nil {
				return fmt.Sprintf("INFO replication on %s: %v", n.addr(), err)
			}
			if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
				return fmt.Sprintf("replica %s: replication link is not up", n.addr())
			}
			return ""
		}()
		if why != "" {
			return why
		}
	}
	if live == 0 {
		return "no node is running"
	}
	if initial {
		ranges := strings.Split(first, " ")
		if len(ranges) != s.masters {
			return fmt.Sprintf("want %d masters, slot map is %s", s.masters, first)
		}
		for _, r := range ranges {
			if got := strings.Count(r, ","); got != s.replicas {
				return fmt.Sprintf("want %d replicas per master, slot map is %s", s.replicas, first)
			}
		}
	}
	return ""
}

// slotMap renders CLUSTER SLOTS canonically as "lo-hi=master,replica,..."
// per range (replicas sorted), ranges in slot order, and checks that the
// ranges cover every slot and every node has a known address.
func slotMap(slots []redis.ClusterSlot) (string, error) {
	slices.SortFunc(slots, func(a, b redis.ClusterSlot) int { return a.Start - b.Start })
	var parts []string
	next := 0
	for _, sl := range slots {
		if sl.Start != next {
			return "", fmt.Errorf("slots %d-%d are not served", next, sl.Start-1)
		}
		next = sl.End + 1
		if len(sl.Nodes) == 0 {
			return "", fmt.Errorf("slots %d-%d have no node", sl.Start, sl.End)
		}
		addrs := make([]string, len(sl.Nodes))
		for i, nd := range sl.Nodes {
			if !strings.HasPrefix(nd.Addr, "127.0.0.1:") {
				return "", fmt.Errorf("node %s has address %q", nd.ID, nd.Addr)
			}
			addrs[i] = nd.Addr
		}
		slices.Sort(addrs[1:])
		parts = append(parts, fmt.Sprintf("%d-%d=%s", sl.Start, sl.End, strings.Join(addrs, ",")))
	}
	if next != clusterSlots {
		return "", fmt.Errorf("slots %d-%d are not served", next, clusterSlots-1)
	}
	return strings.Join(parts, " "), nil
}

// slotsFromLiveNode returns CLUSTER SLOTS as seen by the first running node.
func (s *Server) slotsFromLiveNode(tb testing.TB) ([]redis.ClusterSlot, *redis.Client) {
	tb.Helper()
	if !s.Cluster {
		tb.Fatalf("streamstest: not a cluster")
	}
	for _, n := range s.nodes {
		if !n.isRunning() {
			continue
		}
		c := s.adminClient(n.addr())
		ctx, cancel := withTimeout(5 * time.Second)
		//lint:ignore SA1019 go-redis's cluster client routes by CLUSTER SLOTS; report what it sees.
		slots, err := c.ClusterSlots(ctx).Result()
		cancel()
		if err != nil {
			c.Close()
			tb.Fatalf("streamstest: CLUSTER SLOTS on %s: %v", n.addr(), err)
		}
		slices.SortFunc(slots, func(a, b redis.ClusterSlot) int { return a.Start - b.Start })
		return slots, c
	}
	tb.Fatalf("streamstest: no node of the cluster is running")
	return nil, nil
}

// Masters returns the addresses of the nodes currently serving slots, in
// slot order, as seen by the first running node.
func (s *Server) Masters(tb testing.TB) []string {
	tb.Helper()
	slots, c := s.slotsFromLiveNode(tb)
	c.Close()
	var out []string
	for _, sl := range slots {
		if !slices.Contains(out, sl.Nodes[0].Addr) {
			out = append(out, sl.Nodes[0].Addr)
		}
	}
	return out
}

// Replicas returns the addresses of the replicas of the master at address
// master, as seen by the first running node. Replicas marked failed, and
// replicas that have not yet replicated anything, are omitted (as CLUSTER
// SLOTS does).
func (s *Server) Replicas(tb testing.TB, master string) []string {
	tb.Helper()
	slots, c := s.slotsFromLiveNode(tb)
	c.Close()
	for _, sl := range slots {
		if sl.Nodes[0].Addr == master {
			var out []string
			for _, nd := range sl.Nodes[1:] {
				out = append(out, nd.Addr)
			}
			return out
		}
	}
	return nil
}

// MasterFor returns the address of the master serving key's hash slot.
func (s *Server) MasterFor(tb testing.TB, key string) string {
	tb.Helper()
	slots, c := s.slotsFromLiveNode(tb)
	defer c.Close()
	ctx, cancel := withTimeout(5 * time.Second)
	defer cancel()
	slot, err := c.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		tb.Fatalf("streamstest: CLUSTER KEYSLOT: %v", err)
	}
	for _, sl := range slots {
		if int(slot) >= sl.Start && int(slot) <= sl.End {
			return sl.Nodes[0].Addr
		}
	}
	tb.Fatalf("streamstest: slot %d of %q is not served", slot, key)
	return ""
}

// KillMaster kills (SIGKILL) the master serving key's hash slot and returns
// its address. With replicas, the cluster then fails over after the node
// timeout (2 s); call [Server.WaitHealthy] to wait for it. Only for private
// clusters.
func (s *Server) KillMaster(tb testing.TB, key string) string {
	tb.Helper()
	addr := s.MasterFor(tb, key)
	s.KillNode(tb, addr)
	return addr
}
