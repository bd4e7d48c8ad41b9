package replay_test

import (
	"context"
	"io"
	"os"
	"testing"

	"github.com/tickwire/tickwire/lobby/replay"
	"github.com/tickwire/tickwire/wire"
)

// FuzzReader opens arbitrary bytes as a recording and plays them: a store
// and a reader must never panic or hang, and whatever plays ends with
// `closed`, its ids increasing.
func FuzzReader(f *testing.F) {
	src := f.TempDir()
	s, err := replay.Open(replay.Config{Dir: src, Logger: quiet()})
	if err != nil {
		f.Fatal(err)
	}
	record(f, s, "r1", arenaSpec, 3)
	_ = s.Close()
	data, err := os.ReadFile(recordingFile(src, "r1"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data, uint64(0), false)
	f.Add(data, uint64(45), false)
	f.Add(data, uint64(20), true)
	f.Add(data[:len(data)/2], uint64(0), false)
	f.Add([]byte("TWREPLY1"), uint64(0), false)
	f.Add([]byte{}, uint64(0), false)
	f.Fuzz(func(t *testing.T, data []byte, from uint64, resume bool) {
		dir := t.TempDir()
		if err := os.WriteFile(recordingFile(dir, "r1"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := replay.Open(replay.Config{Dir: dir, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		r, err := s.Open("r1")
		if err != nil {
			return
		}
		defer r.Close()
		if resume {
			r.ResumeAfter(from)
		} else {
			r.Seek(from)
		}
		var last *replay.Event
		for {
			e, err := r.Next(context.Background())
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if last != nil && e.ID <= last.ID {
				t.Fatalf("id %d after %d", e.ID, last.ID)
			}
			c := *e
			last = &c
		}
		if last == nil || last.Type != wire.EventClosed {
			t.Fatalf("replay ends with %v", last)
		}
	})
}
