package room

import (
	"context"
	"testing"
	"time"

	"github.com/tickwire/tickwire/wire"
)

// panicky is an observer whose snapshot handling panics after a while, as a
// bug in a room's tick would.
type panicky struct {
	ticks  int
	closed chan string
}

func (p *panicky) Opened(wire.SpectatorRoom) {}
func (p *panicky) Joined(*wire.Joined)       {}
func (p *panicky) Left(*wire.Left)           {}
func (p *panicky) Chat(*wire.ChatLine)       {}
func (p *panicky) Closed(reason string)      { p.closed <- reason }
func (p *panicky) Snap(uint64, int64, []wire.Table) {
	if p.ticks++; p.ticks == 10 {
		panic("bug in a tick")
	}
}

// closer records how the room closed a client.
type closer struct {
	recorder
	code chan int
}

func (c *closer) Close(code int, _ string) { c.code <- code }

func TestPanicInTickEndsOnlyThatRoom(t *testing.T) {
	obs := &panicky{closed: make(chan string, 1)}
	bad := New(withMode(Config{ID: "bad", Hz: 100, Observer: obs, Logger: quiet()}))
	good := runRoom(t, Config{ID: "good", Hz: 100})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go bad.Run(ctx)
	c := &closer{code: make(chan int, 1)}
	if _, err := bad.Join(ctx, c, "ana"); err != nil {
		t.Fatal(err)
	}
	other := &recorder{}
	if _, err := good.Join(ctx, other, "ben"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-bad.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the room did not end after a panic")
	}
	if reason := <-obs.closed; reason != "crashed" {
		t.Fatalf("spectators told %q, want crashed", reason)
	}
	if code := <-c.code; code != wire.CloseGoingAway {
		t.Fatalf("player closed with %d", code)
	}
	var gotError bool
	for _, m := range c.msgs {
		if e, err := wire.DecodeServer(m); err == nil && e.Type() == wire.TypeError && e.(*wire.Error).Code == wire.CodeClosed {
			gotError = true
		}
	}
	if !gotError {
		t.Fatal("the player got no error before the close")
	}
	// The other room goes on ticking.
	waitStates(t, other, len(other.stateTimes())+10)
	if _, err := bad.Join(ctx, &recorder{}, "late"); err != ErrRoomClosed {
		t.Fatalf("join after the crash: %v", err)
	}
}
