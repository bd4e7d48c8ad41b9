//go:build unix

package replay_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"

	"github.com/tickwire/tickwire/lobby/replay"
)

// reference plays a copy of the recording of room id in a store without a
// cache, from the seek given.
func reference(t *testing.T, src, id string, seek func(*replay.Reader)) []event {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile(recordingFile(src, id))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(recordingFile(dir, id), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return play(t, openStore(t, replay.Config{Dir: dir, CacheBytes: -1}), id, seek)
}

// sameReplay reports the first difference of two replays.
func sameReplay(want, got []event) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d events, want %d", len(got), len(want))
	}
	for i := range want {
		w, g := &want[i], &got[i]
		if g.ID != w.ID || g.Type != w.Type || g.N != w.N || g.ST != w.ST || g.LiveID != w.LiveID || !bytes.Equal(g.Data, w.Data) {
			return fmt.Errorf("event %d: %d %s n=%d %s, want %d %s n=%d %s", i, g.ID, g.Type, g.N, g.Data, w.ID, w.Type, w.N, w.Data)
		}
	}
	return nil
}

func TestViewersOfOneReplayShareItsDecoding(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, replay.Config{Dir: dir})
	record(t, s, "r1", arenaSpec, 20)
	want := reference(t, dir, "r1", nil)
	if s.CacheStats() != (replay.CacheStats{}) {
		t.Fatalf("stats before any replay: %+v", s.CacheStats())
	}
	if err := sameReplay(want, play(t, s, "r1", nil)); err != nil {
		t.Fatalf("the first viewer: %v", err)
	}
	blocks := s.CacheStats().Decoded
	if blocks < 5 {
		t.Fatalf("%d blocks decoded by one viewer", blocks)
	}

	const viewers = 40
	got := make([][]event, viewers)
	var wg sync.WaitGroup
	for i := range viewers {
		wg.Go(func() {
			r, err := s.Open("r1")
			if err != nil {
				t.Error(err)
				return
			}
			defer r.Close()
			for {
				e, err := r.Next(context.Background())
				if err == io.EOF {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				ev := event{Event: *e}
				ev.Tables = nil
				got[i] = append(got[i], ev)
			}
		})
	}
	wg.Wait()
	for i := range got {
		if err := sameReplay(want, got[i]); err != nil {
			t.Fatalf("viewer %d: %v", i, err)
		}
	}
	st := s.CacheStats()
	if st.Decoded != blocks || st.Hits != viewers*blocks {
		t.Fatalf("%+v after %d viewers of %d blocks: each block must be decoded once", st, viewers, blocks)
	}
	if st.Blocks != int(blocks) || st.Bytes <= 0 || st.Bytes > replay.DefaultCacheBytes {
		t.Fatalf("%+v", st)
	}
}

// A viewer takes some blocks from the cache and decodes the others, from
// the state another viewer left, and plays what a viewer alone plays.
func TestCachedAndDecodedBlocksMix(t *testing.T) {
	dir := t.TempDir()
	// A few of the recording's blocks fit in the cache.
	s := openStore(t, replay.Config{Dir: dir, CacheBytes: 700 << 10, MaxPending: 1 << 30})
	// Blocks of a second: every other one goes on from the one before.
	arenaMinute().record(t, s, "r1")
	for _, seek := range []func(*replay.Reader){
		nil,
		func(r *replay.Reader) { r.Seek(301) },
		func(r *replay.Reader) { r.Seek(777) },
		func(r *replay.Reader) { r.Seek(1790) },
		func(r *replay.Reader) { r.ResumeAfter(500) },
	} {
		want := reference(t, dir, "r1", seek)
		for round := range 3 {
			if err := sameReplay(want, play(t, s, "r1", seek)); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	st := s.CacheStats()
	if st.Hits == 0 || st.Bytes > 700<<10 {
		t.Fatalf("%+v", st)
	}

	// Part of a replay from the start, then one whole: its first blocks
	// come from the cache, the next ones it decodes itself.
	dir2 := t.TempDir()
	data, err := os.ReadFile(recordingFile(dir, "r1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(recordingFile(dir2, "r1"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, replay.Config{Dir: dir2})
	r, err := s.Open("r1")
	if err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		if _, err := r.Next(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	_ = r.Close()
	part := s.CacheStats().Decoded
	if err := sameReplay(reference(t, dir, "r1", nil), play(t, s, "r1", nil)); err != nil {
		t.Fatal(err)
	}
	if st := s.CacheStats(); st.Hits != part || st.Decoded <= part {
		t.Fatalf("%+v: %d blocks decoded by the first viewer", st, part)
	}
}
