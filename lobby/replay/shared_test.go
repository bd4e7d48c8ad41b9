package replay_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tickwire/tickwire/game/room"
	"github.com/tickwire/tickwire/internal/natstest"
	"github.com/tickwire/tickwire/lobby/feed"
	"github.com/tickwire/tickwire/lobby/replay"
	"github.com/tickwire/tickwire/wire"
)

// connect connects to the NATS server at url until the test ends (after
// the stores opened later, which are closed first).
func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// waitListed waits until s lists the room as ok says, and returns it.
func waitListed(t *testing.T, s *replay.Store, room string, ok func(replay.Summary) bool) replay.Summary {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, sum := range s.List(0, 0) {
			if sum.Room == room && ok(sum) {
				return sum
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listed as expected: %+v", room, s.List(0, 0))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sameEvents reports how two replays differ, nil when they do not.
func sameEvents(want, got []event) error {
	if len(want) != len(got) {
		return fmt.Errorf("%d events, want %d", len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if w.ID != g.ID || w.Type != g.Type || w.N != g.N || w.LiveID != g.LiveID || string(w.Data) != string(g.Data) {
			return fmt.Errorf("event %d: %d %s n%d %s, want %d %s n%d %s", i, g.ID, g.Type, g.N, g.Data, w.ID, w.Type, w.N, w.Data)
		}
	}
	return nil
}

func TestRecordingsAreSharedThroughJetStream(t *testing.T) {
	url := natstest.StartJetStream(t)
	dirA := t.TempDir()
	ncA := connect(t, url)
	a, err := replay.Open(replay.Config{Dir: dirA, NATS: ncA, FlushEvery: 50 * time.Millisecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := openStore(t, replay.Config{Dir: t.TempDir(), NATS: connect(t, url)})

	// A room recorded on a, listed on b while it runs and followed there.
	f := feed.New(feed.Config{}, nil)
	rec, err := a.Record("r1", replay.RecordOptions{LiveID: f.LastID})
	if err != nil {
		t.Fatal(err)
	}
	m := newMatch(arenaSpec, 42, "r1", room.Observers{f, rec})
	script(t, m, f, 2)
	waitListed(t, b, "r1", func(s replay.Summary) bool { return s.End == 0 && s.Mode == "arena" && s.Hz == 30 })
	rd, err := b.Open("r1")
	if err != nil {
		t.Fatal(err)
	}
	followed := make(chan []event, 1)
	go func() {
		defer rd.Close()
		followed <- drain(t, rd, false)
	}()
	script(t, m, f, 3)
	m.obs.Closed("idle")
	<-rec.Done()
	want := play(t, a, "r1", nil)

	// a goes away with its files.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	ncA.Close()
	if err := os.RemoveAll(dirA); err != nil {
		t.Fatal(err)
	}
	if len(want) < 150 || want[len(want)-1].Type != wire.EventClosed {
		t.Fatalf("a played %d events", len(want))
	}
	select {
	case got := <-followed:
		if err := sameEvents(want, got); err != nil {
			t.Fatalf("followed on b: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the replay followed on b did not end")
	}

	// A node that opens after a is gone lists and plays it, from any tick.
	c := openStore(t, replay.Config{Dir: t.TempDir(), NATS: connect(t, url)})
	sum := waitListed(t, c, "r1", func(s replay.Summary) bool { return s.End != 0 })
	if sum.Ticks != 150 || !c.Has("r1") {
		t.Fatalf("c lists %+v", sum)
	}
	if err := sameEvents(want, play(t, c, "r1", nil)); err != nil {
		t.Fatalf("played on c: %v", err)
	}
	seek := play(t, c, "r1", func(r *replay.Reader) { r.Seek(100) })
	if seek[0].Type != wire.EventRoom || seek[1].Type != wire.EventSnap || seek[1].N != 100 {
		t.Fatalf("seek to 100 on c: %s %s n%d", seek[0].Type, seek[1].Type, seek[1].N)
	}
	// The copy is c's now: its file plays without JetStream's help.
	if _, err := os.Stat(filepath.Join(c.Dir(), "remote", "r1.twr")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.OpenContext(context.Background(), "nothing"); err != replay.ErrNotFound {
		t.Fatalf("an unknown room: %v", err)
	}
}

func TestRecordingGoesOnWithoutJetStream(t *testing.T) {
	// A NATS server without JetStream: nothing can be shared, the
	// recording is kept here as ever, and the store closes promptly.
	url := natstest.Start(t)
	s, err := replay.Open(replay.Config{Dir: t.TempDir(), NATS: connect(t, url), FlushEvery: 20 * time.Millisecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	live := record(t, s, "r1", arenaSpec, 3)
	got := play(t, s, "r1", nil)
	if countSnaps(got) != 90 || len(live.events) == 0 {
		t.Fatalf("%d ticks replayed", countSnaps(got))
	}
	began := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Fatalf("Close took %v", d)
	}
}

func TestSharedCopyCatchesUpAfterAnOutage(t *testing.T) {
	ns := natstest.NewJetStream(t)
	dial := func() *nats.Conn {
		nc, err := nats.Connect(ns.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	a := openStore(t, replay.Config{Dir: t.TempDir(), NATS: dial(), FlushEvery: 20 * time.Millisecond})
	b := openStore(t, replay.Config{Dir: t.TempDir(), NATS: dial()})
	f := feed.New(feed.Config{}, nil)
	rec, err := a.Record("r1", replay.RecordOptions{LiveID: f.LastID})
	if err != nil {
		t.Fatal(err)
	}
	m := newMatch(arenaSpec, 42, "r1", room.Observers{f, rec})
	script(t, m, f, 1)
	waitListed(t, b, "r1", func(s replay.Summary) bool { return s.End == 0 })

	// NATS goes away: the room records on at its pace, here.
	ns.Stop()
	for range 3 {
		began := time.Now()
		script(t, m, f, 1)
		if d := time.Since(began); d > 500*time.Millisecond {
			t.Fatalf("a second of ticks took %v without NATS", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st := rec.Stats(); st.Dropped != 0 {
		t.Fatalf("%d records dropped", st.Dropped)
	}
	// It comes back: the shared copy catches up, and is whole.
	ns.Restart()
	script(t, m, f, 1)
	m.obs.Closed("idle")
	<-rec.Done()
	want := play(t, a, "r1", nil)
	if countSnaps(want) != 150 {
		t.Fatalf("a plays %d ticks", countSnaps(want))
	}
	waitListed(t, b, "r1", func(s replay.Summary) bool { return s.End != 0 && s.Ticks == 150 })
	if err := sameEvents(want, play(t, b, "r1", nil)); err != nil {
		t.Fatalf("played on b: %v", err)
	}
}

func TestCopyOfADeadNodesRecordingEnds(t *testing.T) {
	t.Cleanup(replay.SetSharedTimings(time.Second, 200*time.Millisecond))
	url := natstest.StartJetStream(t)
	ncA := connect(t, url)
	a := openStore(t, replay.Config{Dir: t.TempDir(), NATS: ncA, FlushEvery: 20 * time.Millisecond})
	b := openStore(t, replay.Config{Dir: t.TempDir(), NATS: connect(t, url)})
	f := feed.New(feed.Config{}, nil)
	rec, err := a.Record("r1", replay.RecordOptions{LiveID: f.LastID})
	if err != nil {
		t.Fatal(err)
	}
	m := newMatch(arenaSpec, 42, "r1", room.Observers{f, rec})
	script(t, m, f, 2)
	shipped := waitListed(t, b, "r1", func(s replay.Summary) bool { return s.End == 0 && s.Ticks == 60 })
	rd, err := b.Open("r1")
	if err != nil {
		t.Fatal(err)
	}
	followed := make(chan []event, 1)
	go func() {
		defer rd.Close()
		followed <- drain(t, rd, false)
	}()

	// a loses NATS for good, as a node that dies: b's copy ends a
	// second after a's last listing, with what reached JetStream.
	time.Sleep(100 * time.Millisecond)
	ncA.Close()
	script(t, m, f, 1)
	m.obs.Closed("idle")
	<-rec.Done()
	want := play(t, a, "r1", nil)
	select {
	case got := <-followed:
		if err := prefixOf(want, got); err != nil {
			t.Fatal(err)
		}
		if n := countSnaps(got); n != 60 {
			t.Fatalf("b played %d ticks, %d were shipped", n, shipped.Ticks)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the copy of a dead node's recording did not end")
	}
	sum, ok := b.Summary("r1")
	if !ok || sum.End == 0 || sum.Ticks != 60 {
		t.Fatalf("b lists %+v", sum)
	}
}
