package replay_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tickwire/tickwire/game"
	"github.com/tickwire/tickwire/game/arena"
	"github.com/tickwire/tickwire/game/room"
	"github.com/tickwire/tickwire/game/shooter"
	"github.com/tickwire/tickwire/lobby/feed"
	"github.com/tickwire/tickwire/lobby/replay"
	"github.com/tickwire/tickwire/wire"
)

func TestMain(m *testing.M) {
	if os.Getenv(killHelperEnv) != "" {
		killHelper()
		return
	}
	goleak.VerifyTestMain(m)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// openStore opens a store of dir, closed at the end of the test.
func openStore(t testing.TB, cfg replay.Config) *replay.Store {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	s, err := replay.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func specOf(s game.Spec) *game.Spec {
	if err := s.Validate(); err != nil {
		panic(err)
	}
	return &s
}

// match plays a mode without the room engine's clock: its players are the
// mode's bots, and every event goes to one observer as a room would send
// it, on the test's goroutine.
type match struct {
	spec    *game.Spec
	schema  *wire.Schema
	mode    game.Mode
	frame   *game.Frame
	obs     room.Observer
	hz      int
	n       uint64
	st0     int64
	bots    map[uint32]game.Bot
	ids     []uint32
	nextID  uint32
	snap    *wire.Snap // the newest state, for the bots
	players []wire.PlayerInfo
}

func newMatch(spec *game.Spec, seed uint64, id string, obs room.Observer) *match {
	m := &match{spec: spec, schema: spec.Schema(), mode: spec.New(seed), obs: obs, hz: 30,
		st0: time.Now().UnixMilli(), bots: map[uint32]game.Bot{}}
	m.frame = game.NewFrame(m.schema)
	obs.Opened(wire.SpectatorRoom{ID: id, Hz: m.hz, W: spec.Field.W, H: spec.Field.H,
		Players: []wire.PlayerInfo{}, Mode: spec.Name, Schema: m.schema})
	return m
}

func (m *match) join(name string) uint32 {
	m.nextID++
	id := m.nextID
	m.mode.Join(id)
	m.bots[id] = m.spec.NewBot(uint64(id))
	m.ids = append(m.ids, id)
	m.players = append(m.players, wire.PlayerInfo{ID: id, Name: name})
	m.obs.Joined(&wire.Joined{ID: id, Name: name})
	return id
}

func (m *match) leave(id uint32) {
	m.mode.Leave(id)
	delete(m.bots, id)
	m.ids = slices.DeleteFunc(m.ids, func(x uint32) bool { return x == id })
	m.players = slices.DeleteFunc(m.players, func(p wire.PlayerInfo) bool { return p.ID == id })
	m.obs.Left(&wire.Left{ID: id, Reason: wire.LeftLeave})
}

func (m *match) chat(id uint32, text string) {
	m.obs.Chat(&wire.ChatLine{ID: id, Name: fmt.Sprint("p", id), Text: text, ST: m.st()})
}

func (m *match) st() int64 { return m.st0 + int64(m.n)*1000/int64(m.hz) }

// tick runs one tick: the bots' inputs, a step, the tables to the
// observer.
func (m *match) tick() {
	m.n++
	for _, id := range m.ids {
		m.mode.Input(id, m.bots[id].Input(m.snap, id, m.spec.Field))
	}
	m.mode.Step(1 / float64(m.hz))
	m.frame.Reset()
	m.mode.Write(m.frame)
	tables := m.frame.Tables()
	m.obs.Snap(m.n, m.st(), tables)
	m.snap = &wire.Snap{N: m.n, Tables: map[string]wire.Rows{}}
	for ti, t := range tables {
		rows := make(wire.Rows, t.Len())
		for i := range rows {
			rows[i] = slices.Clone(t.Row(i))
		}
		m.snap.Tables[m.schema.Tables[ti].Name] = rows
	}
}

// liveViewer reads a feed as a spectator that keeps up does.
type liveViewer struct {
	f      *feed.Feed
	cursor int64
	events []feed.Event
}

func (v *liveViewer) read() {
	b := v.f.Read(v.cursor, feed.Stream)
	for _, e := range b.Events {
		ev := *e
		ev.Data = slices.Clone(e.Data)
		v.events = append(v.events, ev)
	}
	v.cursor = int64(b.Last)
}

// script plays a match of about seconds: players come and go, they chat,
// every tick is recorded. It returns the live viewer's events.
func script(t testing.TB, m *match, f *feed.Feed, seconds int) *liveViewer {
	t.Helper()
	v := &liveViewer{f: f, cursor: -1}
	if f != nil {
		v.read() // a viewer from the start
	}
	ticks := seconds * m.hz
	for i := 0; i < ticks; i++ {
		switch {
		case i%40 == 0 && len(m.ids) < 16:
			m.join(fmt.Sprint("p", m.nextID+1))
		case i%97 == 5 && len(m.ids) > 3:
			m.leave(m.ids[1])
		case i%23 == 7 && len(m.ids) > 0:
			m.chat(m.ids[0], fmt.Sprintf("line %d ☺ \"q\"", i))
		}
		m.tick()
		if f != nil {
			v.read()
		}
	}
	return v
}

// record records a scripted match of an arena and returns the live
// viewer's events.
func record(t testing.TB, s *replay.Store, id string, spec *game.Spec, seconds int) *liveViewer {
	t.Helper()
	f := feed.New(feed.Config{}, nil)
	rec, err := s.Record(id, replay.RecordOptions{LiveID: f.LastID})
	if err != nil {
		t.Fatal(err)
	}
	m := newMatch(spec, 42, id, room.Observers{f, rec})
	v := script(t, m, f, seconds)
	m.obs.Closed("idle")
	v.read()
	<-rec.Done()
	return v
}

// event is a replay event kept beyond the next Next.
type event struct {
	replay.Event
	snap wire.SpectatorSnap
}

// play reads a replay to its end.
func play(t testing.TB, s *replay.Store, id string, seek func(*replay.Reader)) []event {
	t.Helper()
	r, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if seek != nil {
		seek(r)
	}
	return drain(t, r, true)
}

// drain reads a replay to its end, decoding the snapshots when asked.
func drain(t testing.TB, r *replay.Reader, decode bool) []event {
	t.Helper()
	var out []event
	for {
		e, err := r.Next(context.Background())
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		ev := event{Event: *e}
		ev.Data = slices.Clone(e.Data)
		ev.Tables = nil
		if e.Type == wire.EventSnap && decode {
			if err := json.Unmarshal(e.Data, &ev.snap); err != nil {
				t.Fatalf("snap %d: %v", e.N, err)
			}
		}
		out = append(out, ev)
	}
}

var arenaSpec = specOf(arena.Spec())

// near reports whether a replayed snapshot holds the live one's rows within
// the declared precision: half a step, plus the live feed's float32
// rounding.
func near(schema *wire.Schema, live, rep wire.SpectatorSnap) error {
	if live.N != rep.N || live.ST != rep.ST {
		return fmt.Errorf("tick %d st %d, replayed %d st %d", live.N, live.ST, rep.N, rep.ST)
	}
	for _, td := range schema.Tables {
		a, b := live.Tables[td.Name], rep.Tables[td.Name]
		if len(a) != len(b) {
			return fmt.Errorf("tick %d table %s: %d rows, replayed %d", live.N, td.Name, len(a), len(b))
		}
		for i := range a {
			for c, col := range td.Columns {
				tol := col.Step/2 + 1e-6*math.Max(1, math.Abs(a[i][c]))
				if math.Abs(a[i][c]-b[i][c]) > tol {
					return fmt.Errorf("tick %d table %s row %d column %s: %v, replayed %v", live.N, td.Name, i, col.Name, a[i][c], b[i][c])
				}
			}
		}
	}
	return nil
}

func TestReplayIsTheLiveSpectatorsMatch(t *testing.T) {
	for _, spec := range []*game.Spec{arenaSpec, specOf(shooter.Spec())} {
		t.Run(spec.Name, func(t *testing.T) {
			s := openStore(t, replay.Config{Dir: t.TempDir()})
			live := record(t, s, "r1", spec, 20)
			got := play(t, s, "r1", nil)

			if got[0].Type != wire.EventRoom || got[len(got)-1].Type != wire.EventClosed {
				t.Fatalf("replay from %s to %s", got[0].Type, got[len(got)-1].Type)
			}
			var closed wire.SpectatorClosed
			if err := json.Unmarshal(got[len(got)-1].Data, &closed); err != nil || closed.Reason != "end-of-replay" {
				t.Fatalf("last event %s", got[len(got)-1].Data)
			}
			var room wire.SpectatorRoom
			if err := json.Unmarshal(got[0].Data, &room); err != nil || room.ID != "r1" || room.Hz != 30 || room.Mode != spec.Name || room.Schema == nil {
				t.Fatalf("room event %s: %v", got[0].Data, err)
			}
			// Every tick, in order, ids increasing.
			snaps := map[uint64]wire.SpectatorSnap{}
			var ticks []uint64
			for i, e := range got {
				if i > 0 && e.ID <= got[i-1].ID {
					t.Fatalf("id %d after %d", e.ID, got[i-1].ID)
				}
				if e.Type == wire.EventSnap {
					ticks = append(ticks, e.snap.N)
					snaps[e.snap.N] = e.snap
				}
			}
			if len(ticks) != 20*30 || ticks[0] != 1 || ticks[len(ticks)-1] != 600 || !slices.IsSorted(ticks) {
				t.Fatalf("%d ticks, %d to %d", len(ticks), ticks[0], ticks[len(ticks)-1])
			}
			// Every snapshot the live viewer saw is replayed, within the
			// precision; the chat lines, joins and leaves come in the
			// same order, with the live ids, after the same tick.
			var liveRel, repRel []string
			liveSnaps, lastN := 0, uint64(0)
			for _, e := range live.events {
				switch e.Type {
				case wire.EventSnap:
					var ls wire.SpectatorSnap
					if err := json.Unmarshal(e.Data, &ls); err != nil {
						t.Fatal(err)
					}
					if err := near(room.Schema, ls, snaps[ls.N]); err != nil {
						t.Fatal(err)
					}
					liveSnaps++
					lastN = ls.N
				case wire.EventJoined, wire.EventLeft, wire.EventChat:
					liveRel = append(liveRel, fmt.Sprintf("%d %s %s", e.ID, e.Type, e.Data))
				}
			}
			if liveSnaps < 150 || lastN < 590 {
				t.Fatalf("the live viewer saw %d snapshots up to tick %d", liveSnaps, lastN)
			}
			for _, e := range got {
				switch e.Type {
				case wire.EventJoined, wire.EventLeft, wire.EventChat:
					repRel = append(repRel, fmt.Sprintf("%d %s %s", e.LiveID, e.Type, e.Data))
				}
			}
			if len(liveRel) < 30 || !slices.Equal(liveRel, repRel) {
				t.Fatalf("live events:\n%q\nreplayed:\n%q", liveRel, repRel)
			}
			sum, ok := s.Summary("r1")
			if !ok || sum.Ticks != 600 || sum.Hz != 30 || sum.Mode != spec.Name || sum.End < sum.Start {
				t.Fatalf("summary %+v", sum)
			}
		})
	}
}

// players returns the room's players after the events before index i.
func playersAt(events []event, i int) []wire.PlayerInfo {
	var room wire.SpectatorRoom
	_ = json.Unmarshal(events[0].Data, &room)
	ps := room.Players
	for _, e := range events[1:i] {
		switch e.Type {
		case wire.EventJoined:
			var m wire.Joined
			_ = json.Unmarshal(e.Data, &m)
			ps = append(ps, wire.PlayerInfo{ID: m.ID, Name: m.Name})
		case wire.EventLeft:
			var m wire.Left
			_ = json.Unmarshal(e.Data, &m)
			ps = slices.DeleteFunc(ps, func(p wire.PlayerInfo) bool { return p.ID == m.ID })
		}
	}
	return ps
}

func TestSeekLandsOnTheAskedTick(t *testing.T) {
	s := openStore(t, replay.Config{Dir: t.TempDir(), KeyframeEvery: time.Second})
	record(t, s, "r1", arenaSpec, 10)
	full := play(t, s, "r1", nil)
	at := map[uint64]int{} // tick -> index in full
	for i, e := range full {
		if e.Type == wire.EventSnap {
			at[e.N] = i
		}
	}
	for _, from := range []uint64{0, 1, 2, 29, 30, 31, 60, 61, 100, 257, 299, 300} {
		got := play(t, s, "r1", func(r *replay.Reader) { r.Seek(from) })
		if from <= 1 {
			// From the start: the whole recording.
			if len(got) != len(full) || got[0].ID != 0 || string(got[1].Data) != string(full[1].Data) {
				t.Fatalf("from %d: %d events, want %d", from, len(got), len(full))
			}
			continue
		}
		want := from
		i := at[want]
		if got[0].Type != wire.EventRoom || got[1].Type != wire.EventSnap || got[1].snap.N != want {
			t.Fatalf("from %d: starts with %s, %s n=%d", from, got[0].Type, got[1].Type, got[1].snap.N)
		}
		var room wire.SpectatorRoom
		_ = json.Unmarshal(got[0].Data, &room)
		if wantP := playersAt(full, i); !slices.Equal(room.Players, wantP) && len(wantP)+len(room.Players) > 0 {
			t.Fatalf("from %d: players %v, want %v", from, room.Players, wantP)
		}
		if got[0].ID >= got[1].ID {
			t.Fatalf("from %d: room id %d, snap id %d", from, got[0].ID, got[1].ID)
		}
		// From there on, the same events as the full replay.
		if len(got)-1 != len(full)-i {
			t.Fatalf("from %d: %d events after room, want %d", from, len(got)-1, len(full)-i)
		}
		for k, e := range got[1:] {
			w := full[i+k]
			if e.ID != w.ID || e.Type != w.Type || string(e.Data) != string(w.Data) {
				t.Fatalf("from %d: event %d is %d %s %s, want %d %s %s", from, k, e.ID, e.Type, e.Data, w.ID, w.Type, w.Data)
			}
		}
	}
	// Past the end: the room as it ended, then closed.
	got := play(t, s, "r1", func(r *replay.Reader) { r.Seek(10_000) })
	if len(got) != 2 || got[0].Type != wire.EventRoom || got[1].Type != wire.EventClosed || got[0].ID >= got[1].ID {
		t.Fatalf("past the end: %v", got)
	}
}

func TestResumeAfterAnID(t *testing.T) {
	s := openStore(t, replay.Config{Dir: t.TempDir(), KeyframeEvery: time.Second})
	record(t, s, "r1", arenaSpec, 6)
	full := play(t, s, "r1", nil)
	for _, i := range []int{0, 1, 2, 45, 46, 47, 100, len(full) - 2, len(full) - 1} {
		after := full[i].ID
		got := play(t, s, "r1", func(r *replay.Reader) { r.ResumeAfter(after) })
		want := full[i+1:]
		if i == len(full)-1 {
			want = full[i:] // after the end: the end again
		}
		if len(got) != len(want) {
			t.Fatalf("after %d: %d events, want %d", after, len(got), len(want))
		}
		for k := range got {
			if got[k].ID != want[k].ID || string(got[k].Data) != string(want[k].Data) {
				t.Fatalf("after %d: event %d is %d %s, want %d %s", after, k, got[k].ID, got[k].Data, want[k].ID, want[k].Data)
			}
		}
	}
}

// recordingFile returns the path of a room's recording.
func recordingFile(dir, room string) string { return filepath.Join(dir, room+".twr") }

// prefixOf checks that got is the start of full, then the end.
func prefixOf(full, got []event) error {
	if len(got) == 0 {
		return errors.New("no events")
	}
	last := got[len(got)-1]
	if last.Type != wire.EventClosed || string(last.Data) != `{"reason":"end-of-replay"}` {
		return fmt.Errorf("last event %s %s", last.Type, last.Data)
	}
	body := got[:len(got)-1]
	if len(body) > len(full)-1 {
		return fmt.Errorf("%d events, the full replay has %d", len(body), len(full)-1)
	}
	for i, e := range body {
		w := full[i]
		if e.Type == wire.EventRoom && i == len(body)-1 && e.ID <= w.ID {
			continue // a replay that ends before its first tick: the room as it ended
		}
		if e.ID != w.ID || e.Type != w.Type || string(e.Data) != string(w.Data) {
			return fmt.Errorf("event %d is %d %s %.60s, want %d %s %.60s", i, e.ID, e.Type, e.Data, w.ID, w.Type, w.Data)
		}
	}
	if last.ID <= body[len(body)-1].ID {
		return fmt.Errorf("closed id %d after %d", last.ID, body[len(body)-1].ID)
	}
	return nil
}

func TestTruncatedFilePlaysShorter(t *testing.T) {
	src := t.TempDir()
	s := openStore(t, replay.Config{Dir: src})
	record(t, s, "r1", arenaSpec, 8)
	full := play(t, s, "r1", nil)
	data, err := os.ReadFile(recordingFile(src, "r1"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := recordingFile(dir, "r1")
	lengths := 0
	prev := -1
	for cut := 0; cut <= len(data); cut++ {
		// Every byte of the last 400, and every 97th before.
		if cut < len(data)-400 && cut%97 != 0 {
			continue
		}
		if err := os.WriteFile(path, data[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		ds, err := replay.Open(replay.Config{Dir: dir, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		r, err := ds.Open("r1")
		if errors.Is(err, replay.ErrNotFound) {
			if cut > 2000 {
				t.Fatalf("cut at %d: no recording", cut)
			}
			_ = ds.Close()
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got := drain(t, r, false)
		_ = r.Close()
		if err := prefixOf(full, got); err != nil {
			t.Fatalf("cut at %d of %d: %v", cut, len(data), err)
		}
		if len(got) < prev {
			t.Fatalf("cut at %d: %d events, %d with less", cut, len(got), prev)
		}
		prev = len(got)
		// The torn tail was cut off the file: it ends after a whole frame.
		fi, _ := os.Stat(path)
		if fi.Size() > int64(cut) {
			t.Fatalf("cut at %d: file of %d", cut, fi.Size())
		}
		lengths++
		_ = ds.Close()
	}
	if prev != len(full) {
		t.Fatalf("the whole file plays %d events, want %d", prev, len(full))
	}
	t.Logf("%d cuts of %d bytes played", lengths, len(data))
}

func TestDamagedByteEndsTheReplayThere(t *testing.T) {
	src := t.TempDir()
	s := openStore(t, replay.Config{Dir: src})
	record(t, s, "r1", arenaSpec, 8)
	full := play(t, s, "r1", nil)
	data, _ := os.ReadFile(recordingFile(src, "r1"))
	dir := t.TempDir()
	path := recordingFile(dir, "r1")
	shorter := 0
	for at := 0; at < len(data); at += 29 {
		bad := slices.Clone(data)
		bad[at] ^= 0x20
		if err := os.WriteFile(path, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		ds, err := replay.Open(replay.Config{Dir: dir, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		r, err := ds.Open("r1")
		if err != nil {
			if !errors.Is(err, replay.ErrNotFound) || at > 2000 {
				t.Fatalf("byte %d: %v", at, err)
			}
			_ = ds.Close()
			continue
		}
		got := drain(t, r, false)
		_ = r.Close()
		if err := prefixOf(full, got); err != nil {
			t.Fatalf("byte %d flipped: %v", at, err)
		}
		if len(got) == len(full) {
			t.Fatalf("byte %d flipped: the whole replay", at)
		}
		shorter++
		_ = ds.Close()
	}
	if shorter == 0 {
		t.Fatal("nothing played")
	}
}

func TestRetentionRemovesOldRecordings(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, replay.Config{Dir: dir, Keep: 300 * time.Millisecond})
	record(t, s, "old", arenaSpec, 1)
	// A room still running when its recording would have expired.
	f := feed.New(feed.Config{}, nil)
	rec, err := s.Record("running", replay.RecordOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := newMatch(arenaSpec, 1, "running", room.Observers{f, rec})
	m.join("a")
	m.tick()
	time.Sleep(400 * time.Millisecond)
	record(t, s, "new", arenaSpec, 1)
	s.Prune()
	if _, err := os.Stat(recordingFile(dir, "old")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("old recording still there: %v", err)
	}
	if _, err := s.Open("old"); !errors.Is(err, replay.ErrNotFound) {
		t.Fatalf("old recording opens: %v", err)
	}
	for _, id := range []string{"new", "running"} {
		if _, err := os.Stat(recordingFile(dir, id)); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	m.obs.Closed("idle")
	<-rec.Done()

	// By size: the oldest go first until the rest fit.
	dir2 := t.TempDir()
	s2 := openStore(t, replay.Config{Dir: dir2})
	for _, id := range []string{"a", "b", "c"} {
		record(t, s2, id, arenaSpec, 2)
	}
	sizes := map[string]int64{}
	for _, id := range []string{"a", "b", "c"} {
		fi, err := os.Stat(recordingFile(dir2, id))
		if err != nil {
			t.Fatal(err)
		}
		sizes[id] = fi.Size()
	}
	_ = s2.Close()
	s3 := openStore(t, replay.Config{Dir: dir2, MaxBytes: sizes["b"] + sizes["c"]})
	var left []string
	for _, sum := range s3.List(0, 0) {
		left = append(left, sum.Room)
	}
	if !slices.Equal(left, []string{"c", "b"}) {
		t.Fatalf("left %v", left)
	}
	if _, err := os.Stat(recordingFile(dir2, "a")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a still on disk: %v", err)
	}
}

func TestListNewestFirstInPages(t *testing.T) {
	s := openStore(t, replay.Config{Dir: t.TempDir()})
	var ids []string
	for i := range 5 {
		id := fmt.Sprint("room", i)
		ids = append(ids, id)
		record(t, s, id, arenaSpec, 1)
	}
	slices.Reverse(ids)
	var got []string
	before := int64(0)
	for {
		page := s.List(2, before)
		if len(page) == 0 {
			break
		}
		if len(page) > 2 {
			t.Fatalf("page of %d", len(page))
		}
		for _, sum := range page {
			if sum.End < sum.Start || sum.Ticks != 30 || sum.Hz != 30 || sum.Mode != "arena" {
				t.Fatalf("%+v", sum)
			}
			got = append(got, sum.Room)
			before = sum.Start
		}
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("listed %v, want %v", got, ids)
	}
}

func TestReplayOfARunningRoomFollowsIt(t *testing.T) {
	s := openStore(t, replay.Config{Dir: t.TempDir(), FlushEvery: 20 * time.Millisecond})
	f := feed.New(feed.Config{}, nil)
	rec, err := s.Record("r1", replay.RecordOptions{LiveID: f.LastID})
	if err != nil {
		t.Fatal(err)
	}
	m := newMatch(arenaSpec, 3, "r1", room.Observers{f, rec})
	m.join("a")
	m.tick()
	var r *replay.Reader
	for deadline := time.Now().Add(5 * time.Second); ; {
		if r, err = s.Open("r1"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer r.Close()
	if sum := r.Summary(); sum.End != 0 {
		t.Fatalf("a running room's recording has an end: %+v", sum)
	}
	got := make(chan []event, 1)
	go func() {
		var out []event
		for {
			e, err := r.Next(context.Background())
			if err != nil {
				got <- out
				return
			}
			out = append(out, event{Event: replay.Event{ID: e.ID, Type: e.Type, N: e.N}})
		}
	}()
	for range 90 {
		m.tick()
		time.Sleep(time.Millisecond)
	}
	m.chat(1, "bye")
	m.obs.Closed("idle")
	select {
	case events := <-got:
		var ticks []uint64
		for _, e := range events {
			if e.Type == wire.EventSnap {
				ticks = append(ticks, e.N)
			}
		}
		if len(ticks) != 91 || events[len(events)-1].Type != wire.EventClosed || events[len(events)-2].Type != wire.EventChat {
			t.Fatalf("%d ticks; ends with %v", len(ticks), events[len(events)-2:])
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the replay did not end with the room")
	}
}

func TestStoreCloseEndsOpenRecordings(t *testing.T) {
	dir := t.TempDir()
	s, err := replay.Open(replay.Config{Dir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := s.Record("r1", replay.RecordOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := newMatch(arenaSpec, 3, "r1", rec)
	m.join("a")
	for range 40 {
		m.tick()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	m.tick() // a room that goes on after the store closed records nothing more
	s2 := openStore(t, replay.Config{Dir: dir})
	got := play(t, s2, "r1", nil)
	if n := countSnaps(got); n != 40 {
		t.Fatalf("%d ticks replayed", n)
	}
	if _, err := s.Record("r2", replay.RecordOptions{}); !errors.Is(err, replay.ErrClosed) {
		t.Fatalf("record after close: %v", err)
	}
	if _, err := s2.Record("r1", replay.RecordOptions{}); !errors.Is(err, replay.ErrExists) {
		t.Fatalf("record an existing room: %v", err)
	}
}

func countSnaps(events []event) int {
	n := 0
	for _, e := range events {
		if e.Type == wire.EventSnap {
			n++
		}
	}
	return n
}
