package spectator

import (
	"context"
	"testing"
)

// An event read from a response but not handed to the reader, because the
// request was dropped meanwhile, is asked for again: the cursor stays
// before it. It moved past it before, so that a resume after Drop lost the
// event (a server test saw a chat line missing after a reconnect).
func TestAnEventNotHandedOverIsAskedForAgain(t *testing.T) {
	v := &Viewer{events: make(chan Event)} // no reader
	v.last.Store(5)
	ctx, drop := context.WithCancel(context.Background())
	drop()
	if err := v.deliver(ctx, Event{ID: 6, Type: "chat"}); err == nil {
		t.Fatal("delivered with no reader and the request dropped")
	}
	if id, ok := v.LastID(); !ok || id != 5 {
		t.Fatalf("LastID %d, %t after an event not handed over, want 5", id, ok)
	}

	v.events = make(chan Event, 1)
	if err := v.deliver(context.Background(), Event{ID: 6, Type: "chat"}); err != nil {
		t.Fatal(err)
	}
	if id, _ := v.LastID(); id != 6 || len(v.events) != 1 {
		t.Fatalf("LastID %d with %d events handed over, want 6 and 1", id, len(v.events))
	}
}
