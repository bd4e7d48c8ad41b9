//go:build unix

package replay_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tickwire/tickwire/game/room"
	"github.com/tickwire/tickwire/lobby/feed"
	"github.com/tickwire/tickwire/lobby/replay"
	"github.com/tickwire/tickwire/wire"
)

// tape is a minute of a 16-player arena match: the players' joins, each
// tick's tables and the chat lines before it.
type tape struct {
	hz     int
	joins  []wire.Joined
	ticks  [][]wire.Table
	events map[int][]func(o room.Observer)
}

// tapeObserver keeps what a match shows.
type tapeObserver struct{ t *tape }

func (o tapeObserver) Opened(wire.SpectatorRoom) {}
func (o tapeObserver) Joined(m *wire.Joined)     { o.t.joins = append(o.t.joins, *m) }
func (o tapeObserver) Left(m *wire.Left) {
	c := *m
	o.add(func(ob room.Observer) { ob.Left(&c) })
}
func (o tapeObserver) Chat(m *wire.ChatLine) {
	c := *m
	o.add(func(ob room.Observer) { ob.Chat(&c) })
}
func (o tapeObserver) add(f func(room.Observer)) {
	i := len(o.t.ticks)
	o.t.events[i] = append(o.t.events[i], f)
}
func (o tapeObserver) Snap(n uint64, st int64, tables []wire.Table) {
	ts := make([]wire.Table, len(tables))
	for i, t := range tables {
		ts[i] = wire.Table{Cols: t.Cols, Data: append([]float64(nil), t.Data...)}
	}
	o.t.ticks = append(o.t.ticks, ts)
}
func (o tapeObserver) Closed(string) {}

// arenaMinute plays a minute of a 16-player arena match with a chat line
// every 2 s.
func arenaMinute() *tape {
	t := &tape{hz: 30, events: map[int][]func(room.Observer){}}
	m := newMatch(arenaSpec, 11, "bench", tapeObserver{t})
	for i := range 16 {
		m.join(fmt.Sprint("player", i))
	}
	for i := range 60 * m.hz {
		if i%60 == 0 {
			m.chat(m.ids[i%16], "gg, well played, one more?")
		}
		m.tick()
	}
	return t
}

func (t *tape) info() wire.SpectatorRoom {
	return wire.SpectatorRoom{ID: "bench", Hz: t.hz, W: arenaSpec.Field.W, H: arenaSpec.Field.H,
		Mode: arenaSpec.Name, Schema: arenaSpec.Schema()}
}

// play hands ticks [from, to) of the tape to o, numbered from n0, after
// the joins when from is 0; past its end, the tape plays again from its
// start, without the joins.
func (t *tape) play(o room.Observer, n0 uint64, st0 int64, from, to int) {
	if from == 0 {
		for _, j := range t.joins {
			o.Joined(&j)
		}
	}
	for i := from; i < to; i++ {
		k := i % len(t.ticks)
		for _, f := range t.events[k] {
			f(o)
		}
		n := n0 + uint64(i)
		o.Snap(n, st0+int64(n)*1000/int64(t.hz), t.ticks[k])
	}
}

// record records the tape as room id, its writer writing about a block a
// second as it does at the room's pace: a keyframe block, then one that
// goes on from it.
func (t *tape) record(tb testing.TB, s *replay.Store, id string) {
	tb.Helper()
	rec, err := s.Record(id, replay.RecordOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	rec.Opened(t.info())
	st0 := time.Now().UnixMilli()
	for i := 0; i < len(t.ticks); i += t.hz {
		t.play(rec, 1, st0, i, min(i+t.hz, len(t.ticks)))
		rec.Kick()
		time.Sleep(5 * time.Millisecond)
	}
	rec.Closed("idle")
	<-rec.Done()
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRecordTick is the cost of one tick of a 16-player arena room
// for its observers: the live feed alone (the baseline), and the feed and
// the recorder. ns/op is the room goroutine's time; cpu-ns/tick counts
// every goroutine of the process (the recorder's writer compresses and
// writes on its own).
func BenchmarkRecordTick(b *testing.B) {
	t := arenaMinute()
	for _, recording := range []bool{false, true} {
		name := "feed"
		if recording {
			name = "feed+recorder"
		}
		b.Run(name, func(b *testing.B) {
			// Ticks come far faster than a room makes them: the writer
			// may fall behind by more than the default allows.
			s := openStore(b, replay.Config{Dir: b.TempDir(), MaxPending: 1 << 30})
			f := feed.New(feed.Config{}, nil)
			var o room.Observer = f
			var rec *replay.Recorder
			if recording {
				var err error
				if rec, err = s.Record("bench", replay.RecordOptions{LiveID: f.LastID}); err != nil {
					b.Fatal(err)
				}
				o = room.Observers{f, rec}
			}
			o.Opened(t.info())
			st0 := time.Now().UnixMilli()
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i += t.hz {
				// A second of the room's ticks, then the writer's turn.
				t.play(o, 1, st0, i, min(i+t.hz, b.N))
				if rec != nil {
					rec.Kick()
				}
			}
			b.StopTimer()
			o.Closed("idle")
			if rec != nil {
				<-rec.Done()
				if d := rec.Stats().Dropped; d > 0 {
					b.Fatalf("%d records dropped", d)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/tick")
		})
	}
}

// BenchmarkMatchMinuteOnDisk records a minute of a 16-player arena match
// per op and reports the bytes it takes on disk.
func BenchmarkMatchMinuteOnDisk(b *testing.B) {
	t := arenaMinute()
	dir := b.TempDir()
	s := openStore(b, replay.Config{Dir: dir})
	var size int64
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprint("m", i)
		rec, err := s.Record(id, replay.RecordOptions{})
		if err != nil {
			b.Fatal(err)
		}
		rec.Opened(t.info())
		t.play(rec, 1, time.Now().UnixMilli(), 0, len(t.ticks))
		rec.Closed("idle")
		<-rec.Done()
		fi, err := os.Stat(recordingFile(dir, id))
		if err != nil {
			b.Fatal(err)
		}
		size = fi.Size()
	}
	b.ReportMetric(float64(size), "disk-B/match-min")
	b.ReportMetric(float64(size)/float64(len(t.ticks)), "disk-B/tick")
}

// discardSSE is a response writer that drops what a replay stream writes,
// so that a benchmark counts the handler's work alone.
type discardSSE struct {
	h     http.Header
	bytes atomic.Int64
}

func (d *discardSSE) Header() http.Header { return d.h }
func (d *discardSSE) Write(p []byte) (int, error) {
	d.bytes.Add(int64(len(p)))
	return len(p), nil
}
func (d *discardSSE) WriteHeader(int) {}
func (d *discardSSE) Flush()          {}

// BenchmarkReplayViewers records a minute of a 16-player arena match once,
// then plays it at 16x to N viewers at once through the replay handler
// (GET /rooms/{room}/replay?speed=16, its writes dropped), one op being
// the whole replay for all of them, from a store opened for the op (its
// cache empty), with the store's cache of decoded blocks or without it.
// cpu-us/viewer-s is the process's CPU per viewer per second of the
// recording; viewers/core@1x its inverse, the viewers one core serves at
// the room's pace; cache-B/replay-s the cache's bytes per second of the
// recording once played.
func BenchmarkReplayViewers(b *testing.B) {
	t := arenaMinute()
	src := b.TempDir()
	t.record(b, openStore(b, replay.Config{Dir: src, MaxPending: 1 << 30}), "bench")
	data, err := os.ReadFile(recordingFile(src, "bench"))
	if err != nil {
		b.Fatal(err)
	}
	seconds := float64(len(t.ticks)) / float64(t.hz)
	for _, cache := range []int64{-1, 0} {
		for _, n := range []int{1, 50} {
			name := fmt.Sprintf("cache=on/viewers=%d", n)
			if cache < 0 {
				name = fmt.Sprintf("cache=off/viewers=%d", n)
			}
			b.Run(name, func(b *testing.B) {
				var sent atomic.Int64
				var cpu time.Duration
				var cached int64
				for range b.N {
					b.StopTimer()
					dir := b.TempDir()
					if err := os.WriteFile(recordingFile(dir, "bench"), data, 0o644); err != nil {
						b.Fatal(err)
					}
					s, err := replay.Open(replay.Config{Dir: dir, CacheBytes: cache, Logger: quiet()})
					if err != nil {
						b.Fatal(err)
					}
					h := replay.NewHandlers(replay.HandlerConfig{Store: s})
					cpu0 := cpuTime()
					b.StartTimer()
					var wg sync.WaitGroup
					for range n {
						wg.Go(func() {
							req := httptest.NewRequest(http.MethodGet, "/rooms/bench/replay?speed=16", nil)
							req.SetPathValue("room", "bench")
							w := &discardSSE{h: http.Header{}}
							h.SSE(w, req)
							sent.Add(w.bytes.Load())
						})
					}
					wg.Wait()
					b.StopTimer()
					cpu += cpuTime() - cpu0
					cached = s.CacheStats().Bytes
					h.Shutdown()
					_ = s.Close()
				}
				viewerSeconds := seconds * float64(n) * float64(b.N)
				b.ReportMetric(cpu.Seconds()/viewerSeconds*1e6, "cpu-us/viewer-s")
				b.ReportMetric(viewerSeconds/cpu.Seconds(), "viewers/core@1x")
				b.ReportMetric(float64(sent.Load())/viewerSeconds, "B/viewer-s")
				b.ReportMetric(float64(cached)/seconds, "cache-B/replay-s")
			})
		}
	}
}
