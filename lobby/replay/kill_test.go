package replay_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tickwire/tickwire/game/room"
	"github.com/tickwire/tickwire/lobby/feed"
	"github.com/tickwire/tickwire/lobby/replay"
	"github.com/tickwire/tickwire/wire"
)

// killHelperEnv makes the test binary record a match into the directory it
// names until it is killed (see TestKilledRecorderReplaysWhatItFlushed).
const killHelperEnv = "TICKWIRE_REPLAY_KILL_DIR"

// killHelper records a match for ever, printing the newest tick on disk
// each time it grows.
func killHelper() {
	s, err := replay.Open(replay.Config{Dir: os.Getenv(killHelperEnv), FlushEvery: 50 * time.Millisecond, Logger: quiet()})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	f := feed.New(feed.Config{}, nil)
	rec, err := s.Record("killed", replay.RecordOptions{LiveID: f.LastID})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	m := newMatch(arenaSpec, 9, "killed", room.Observers{f, rec})
	for i := range 8 {
		m.join(fmt.Sprint("p", i))
	}
	var shown uint64
	for {
		m.tick()
		if m.n%50 == 0 {
			m.chat(1, fmt.Sprint("at ", m.n))
		}
		if n := rec.Stats().LastN; n != shown {
			shown = n
			fmt.Println("flushed", n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestKilledRecorderReplaysWhatItFlushed(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), killHelperEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var flushed uint64
	sc := bufio.NewScanner(out)
	for flushed < 300 && sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "flushed "); ok {
			flushed, _ = strconv.ParseUint(v, 10, 64)
		} else {
			t.Log(sc.Text())
		}
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: nothing runs after it
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if flushed < 300 {
		t.Fatalf("the recorder flushed up to tick %d only", flushed)
	}

	s := openStore(t, replay.Config{Dir: dir})
	sums := s.List(0, 0)
	if len(sums) != 1 || sums[0].Room != "killed" || sums[0].Ticks < flushed || sums[0].End == 0 {
		t.Fatalf("after the kill: %+v", sums)
	}
	got := play(t, s, "killed", nil)
	var last uint64
	chats := 0
	for _, e := range got {
		switch e.Type {
		case wire.EventSnap:
			if e.N != last+1 {
				t.Fatalf("tick %d after %d", e.N, last)
			}
			last = e.N
		case wire.EventChat:
			chats++
		}
	}
	if last < flushed || chats < int(flushed/50) || got[len(got)-1].Type != wire.EventClosed {
		t.Fatalf("replayed up to tick %d with %d chat lines, ending with %s; %d were flushed", last, chats, got[len(got)-1].Type, flushed)
	}
	t.Logf("flushed up to tick %d, replayed up to %d", flushed, last)
}
