package feed

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tickwire/tickwire/internal/bus"
	"github.com/tickwire/tickwire/wire"
)

// twoNodes joins a host node "h", holding feed f as room "r", and a
// viewer node "v" by an in-process bus, both with cfg's lease; it returns
// their clusters.
func twoNodes(t *testing.T, f *Feed, cfg ClusterConfig) (host, viewer *Cluster) {
	t.Helper()
	b := bus.NewLocal()
	hosted := true
	host, err := NewCluster(ClusterConfig{Bus: b, Node: "h", Local: func(room string) (*Feed, error) {
		if room == "r" && hosted {
			return f, nil
		}
		return nil, ErrUnknownRoom
	}, Host: func(string) (string, bool) { return "", false }, Lease: cfg.Lease})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Bus, cfg.Node = b, "v"
	cfg.Local = func(string) (*Feed, error) { return nil, ErrUnknownRoom }
	if cfg.Host == nil {
		cfg.Host = func(room string) (string, bool) { return "h", room == "r" }
	}
	viewer, err = NewCluster(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		viewer.Close()
		host.Close()
		_ = b.Close()
	})
	return host, viewer
}

// describe lists a batch as "id:type:data" lines.
func describe(b Batch) string {
	var s strings.Builder
	for _, e := range b.Events {
		fmt.Fprintf(&s, "%d:%s:%s\n", e.ID, e.Type, e.Data)
	}
	return s.String()
}

// sameReads checks that every read of the mirror, from every cursor and
// in both modes, gives what the host's gives.
func sameReads(t *testing.T, host, mirror *Feed) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		last := host.Read(0, Stream).Last
		diff := ""
		step := max(1, int64(last)/50) // every cursor of small feeds, fifty of big ones
		for after := int64(-1); after <= int64(last)+1 && diff == ""; after += step {
			for _, mode := range []bool{Stream, Coalesce} {
				h, m := describe(host.Read(after, mode)), describe(mirror.Read(after, mode))
				if h != m {
					diff = fmt.Sprintf("after %d (stream %v):\nhost:\n%smirror:\n%s", after, mode, h, m)
					break
				}
			}
		}
		if diff == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(diff)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A mirror on another node has the same events under the same ids as the
// host, snapshots re-stamped after chat included, and keeps following.
func TestMirrorHasTheHostsEventsAndIDs(t *testing.T) {
	f := New(Config{}, nil)
	f.Opened(roomInfo(wire.PlayerInfo{ID: 1, Name: "ana"}))
	for n := uint64(1); n <= 9; n++ {
		snap(f, n) // nobody watches yet: kept, not published
	}
	chat(f, "before")
	_, viewer := twoNodes(t, f, ClusterConfig{})
	m, err := viewer.Feed("r")
	if err != nil {
		t.Fatal(err)
	}
	m.addViewer(1)
	sameReads(t, f, m)
	for n := uint64(10); n <= 40; n++ {
		snap(f, n)
		if n%7 == 0 {
			chat(f, fmt.Sprint("line ", n))
		}
		if n == 20 {
			f.Joined(&wire.Joined{ID: 2, Name: "ben"})
		}
		if n == 30 {
			f.Left(&wire.Left{ID: 1, Reason: "leave"})
		}
	}
	sameReads(t, f, m)
	if b := m.Read(-1, Coalesce); !strings.Contains(string(b.Events[0].Data), `"name":"ben"`) || strings.Contains(string(b.Events[0].Data), `"ana"`) {
		t.Fatalf("mirror's room event %s, want ben without ana", b.Events[0].Data)
	}
	f.Closed("idle")
	sameReads(t, f, m)
	if b := m.Read(-1, Stream); !b.Closed || b.Events[len(b.Events)-1].Type != wire.EventClosed {
		t.Fatalf("mirror after the room closed: %s", describe(b))
	}
}

// A mirror that stopped watching (no viewer for Idle) misses events; the
// next viewer makes it sync, with the history in pages, and nothing is lost.
func TestIdleMirrorSyncsWhenAViewerComes(t *testing.T) {
	f := New(Config{}, nil)
	f.Opened(roomInfo())
	_, viewer := twoNodes(t, f, ClusterConfig{Lease: 150 * time.Millisecond, Idle: 10 * time.Millisecond})
	m, err := viewer.Feed("r")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the lease runs out
	long := strings.Repeat("x", wire.MaxChatLen)
	for i := range 1200 { // about 350 KB: more than one sync page
		f.Chat(&wire.ChatLine{ID: 1, Name: "ana", Text: fmt.Sprint(i, long), ST: 1})
	}
	if got := m.Read(0, Stream).Events; len(got) != 0 {
		t.Fatalf("a mirror nobody watches got %d events: %s", len(got), describe(m.Read(0, Stream)))
	}
	if m2, err := viewer.Feed("r"); err != nil || m2 != m {
		t.Fatalf("second lookup: %v (same feed %v)", err, m2 == m)
	}
	sameReads(t, f, m)
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := len(m.history); n != 1024 || m.evicted != f.evicted {
		t.Fatalf("mirror holds %d events after the sync, evicted %d, want the host's 1024 and %d", n, m.evicted, f.evicted)
	}
}

// Rooms the directory does not place on another node, and ended ones, have
// no mirror; a host that vanishes ends the mirror's feed with node-lost.
func TestMirrorErrorsAndLostHost(t *testing.T) {
	f := New(Config{}, nil)
	f.Opened(roomInfo())
	listed := true
	host, viewer := twoNodes(t, f, ClusterConfig{Lease: 150 * time.Millisecond, Host: func(room string) (string, bool) {
		return "h", room == "r" && listed
	}})
	if _, err := viewer.Feed("nope"); !errors.Is(err, ErrUnknownRoom) {
		t.Fatalf("unknown room: %v", err)
	}
	m, err := viewer.Feed("r")
	if err != nil {
		t.Fatal(err)
	}
	if viewer.Mirrors() != 1 {
		t.Fatalf("%d mirrors", viewer.Mirrors())
	}
	host.Close() // the host node is gone and so is its room from the directory
	listed = false
	deadline := time.Now().Add(5 * time.Second)
	for !m.isClosed() {
		if time.Now().After(deadline) {
			t.Fatal("mirror not closed after its host left")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b := m.Read(-1, Stream)
	if last := b.Events[len(b.Events)-1]; last.Type != wire.EventClosed || !strings.Contains(string(last.Data), ReasonNodeLost) {
		t.Fatalf("last event %s %s", last.Type, last.Data)
	}
	if _, err := viewer.Feed("r"); !errors.Is(err, ErrRoomEnded) {
		t.Fatalf("lookup after the host left: %v, want ended", err)
	}
}
