package lobby

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/lobby/replay"
	"github.com/tickwire/tickwire/wire"
)

func TestRoomsAreRecordedUnlessCreatedWithRecordFalse(t *testing.T) {
	store, err := replay.Open(replay.Config{Dir: t.TempDir(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() }) // after the lobby's shutdown
	l := newLobby(t, Config{Replays: store, RoomIdle: 300 * time.Millisecond})
	srv := httptest.NewServer(l.RoomsHandler())
	defer srv.Close()
	create := func(body string) string {
		res, err := http.Post(srv.URL, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var v struct{ ID string }
		if err := json.NewDecoder(res.Body).Decode(&v); err != nil || res.StatusCode != http.StatusCreated {
			t.Fatalf("create %s: %d %v", body, res.StatusCode, err)
		}
		return v.ID
	}
	recorded, unrecorded := create(`{}`), create(`{"record":false}`)
	if !store.Has(recorded) || store.Has(unrecorded) {
		t.Fatalf("recorded: %v, unrecorded: %v", store.Has(recorded), store.Has(unrecorded))
	}

	a := mustDial(t, playURL(t, l), player.Options{Name: "ana", Room: recorded})
	if err := a.Chat("hello"); err != nil {
		t.Fatal(err)
	}
	next[*wire.ChatLine](t, a)
	_ = a.Leave()
	r, err := l.Room(recorded)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the room did not end")
	}
	var rd *replay.Reader
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if sum, ok := store.Summary(recorded); ok && sum.End != 0 {
			if rd, err = store.Open(recorded); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the recording did not end")
		}
	}
	defer rd.Close()
	var types []string
	snaps := 0
	var chat *replay.Event
	for {
		e, err := rd.Next(context.Background())
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if e.Type == wire.EventSnap {
			snaps++
		} else {
			types = append(types, e.Type)
		}
		if e.Type == wire.EventChat {
			c := *e
			chat = &c
		}
	}
	want := []string{wire.EventRoom, wire.EventJoined, wire.EventChat, wire.EventLeft, wire.EventClosed}
	if strings.Join(types, " ") != strings.Join(want, " ") || snaps == 0 {
		t.Fatalf("replay %v and %d snapshots, want %v and snapshots", types, snaps, want)
	}
	if chat.LiveID == 0 || !strings.Contains(string(chat.Data), `"text":"hello"`) {
		t.Fatalf("chat %d %s", chat.LiveID, chat.Data)
	}
}
