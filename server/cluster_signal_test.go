package server

import (
	"context"
	"testing"
	"time"

	"github.com/tickwire/tickwire/clients/peer"
)

// Two Pion peers of one call, each on its own node of a NATS cluster,
// are introduced to each other, connect and exchange DataChannel
// messages both ways.
func TestClusterSignalPeersOnTwoNodes(t *testing.T) {
	nodes := startNodes(t, 2, Config{})
	join := func(ts *testServer, name string) *peer.Peer {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p, err := peer.Join(ctx, peer.Config{Server: ts.http.URL, Call: "cross-node", Name: name, NoAudio: true, Logf: t.Logf})
		if err != nil {
			t.Fatalf("join %s: %v", name, err)
		}
		t.Cleanup(func() { _ = p.Close() }) // before the nodes stop
		return p
	}
	a := join(nodes[0], "ana")
	b := join(nodes[1], "bo")
	for _, n := range nodes {
		if st := n.signal.Stats(); st.Peers != 1 {
			t.Fatalf("a node has %d peers of its own, want 1", st.Peers)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, p := range []*peer.Peer{a, b} {
		if err := p.WaitOpen(ctx, 1); err != nil {
			t.Fatalf("peer %s: %v; stats %+v", p.ID(), err, p.Stats())
		}
	}
	for _, p := range []*peer.Peer{a, b} {
		if sent := p.Send(); sent != 1 {
			t.Fatalf("peer %s sent on %d channels, want 1", p.ID(), sent)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		sa, sb := a.Stats(), b.Stats()
		if sa.Echoes == 1 && sb.Echoes == 1 {
			if len(sa.Remotes) != 1 || sa.Remotes[0].ID != b.ID() || sa.Remotes[0].Name != "bo" || sa.Remotes[0].State != "connected" {
				t.Fatalf("a's remotes %+v", sa.Remotes)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("echoes not back within 10s: a %+v, b %+v", sa, sb)
		}
	}

	// b leaves: a is told by b's node through the cluster.
	_ = b.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if r := a.Stats().Remotes; len(r) == 1 && r[0].State == "closed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a did not see b leave: %+v", a.Stats().Remotes)
		}
	}
}
