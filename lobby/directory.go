package lobby

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tickwire/tickwire/game/room"
	"github.com/tickwire/tickwire/internal/bus"
)

// The room directory: every node publishes the rooms it hosts on the bus
// (subject DirectorySubject + "." + node id) every DirectoryEvery, at once
// when it creates or ends a room, and a last, empty "gone" update when it
// drains; each node keeps the others' rooms until their node has sent
// nothing for DirectoryTTL. Listings, matchmaking and joins by id look at
// them, so a player reaching any node can be sent to the node hosting a
// room (see MovedError).

// DirectorySubject is the prefix of the subjects of directory updates.
const DirectorySubject = "tickwire.dir"

// Listing is a room as /api/rooms shows it: its info and the public URL
// of the node hosting it.
type Listing struct {
	room.Info
	URL string `json:"url,omitempty"`
}

// ErrMoved is the error behind MovedError.
var ErrMoved = errors.New("lobby: room is hosted by another node")

// MovedError says that a room is hosted by another node: the player should
// join Room at URL (that node's public URL).
type MovedError struct {
	Room, URL string
}

func (e *MovedError) Error() string {
	return fmt.Sprintf("lobby: room %s is hosted at %s", e.Room, e.URL)
}

// Unwrap returns ErrMoved.
func (e *MovedError) Unwrap() error { return ErrMoved }

// dirUpdate is a node's directory update on the bus (JSON).
type dirUpdate struct {
	Node  string      `json:"node"`
	URL   string      `json:"url"`
	Rooms []room.Info `json:"rooms"`          // every room, private ones flagged
	Gone  bool        `json:"gone,omitempty"` // the node is leaving: forget its rooms
}

// remoteNode is what a node last said about its rooms.
type remoteNode struct {
	url   string
	rooms map[string]room.Info
	seen  time.Time // when its last update arrived
}

// directory holds the rooms of the other nodes.
type directory struct {
	ttl time.Duration

	mu    sync.Mutex // guards nodes
	nodes map[string]*remoteNode
}

func newNodeID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// update records a node's update, received at now.
func (d *directory) update(u dirUpdate, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if u.Gone {
		delete(d.nodes, u.Node)
		return
	}
	rooms := make(map[string]room.Info, len(u.Rooms))
	for _, info := range u.Rooms {
		rooms[info.ID] = info
	}
	d.nodes[u.Node] = &remoteNode{url: u.URL, rooms: rooms, seen: now}
}

// pruneLocked forgets the nodes not heard of for the TTL.
func (d *directory) pruneLocked(now time.Time) {
	for id, n := range d.nodes {
		if now.Sub(n.seen) > d.ttl {
			delete(d.nodes, id)
		}
	}
}

// lookup returns a room of another node and that node's id.
func (d *directory) lookup(id string, now time.Time) (Listing, string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pruneLocked(now)
	for node, n := range d.nodes {
		if info, ok := n.rooms[id]; ok {
			return Listing{Info: info, URL: n.url}, node, true
		}
	}
	return Listing{}, "", false
}

// public returns the public rooms of the other nodes.
func (d *directory) public(now time.Time) []Listing {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pruneLocked(now)
	var out []Listing
	for _, n := range d.nodes {
		for _, info := range n.rooms {
			if !info.Private {
				out = append(out, Listing{Info: info, URL: n.url})
			}
		}
	}
	return out
}

// fullestOpen returns the public room of the mode on another node with
// the most players and a free seat, skipping the ids in tried.
func (d *directory) fullestOpen(mode string, tried []string, now time.Time) (Listing, bool) {
	var best Listing
	found := false
	for _, li := range d.public(now) {
		if li.Players >= li.MaxPlayers || li.Mode != mode || slices.Contains(tried, li.ID) {
			continue
		}
		if !found || li.Players > best.Players || li.Players == best.Players && li.ID < best.ID {
			best, found = li, true
		}
	}
	return best, found
}

// Node returns this node's id on the bus.
func (l *Lobby) Node() string { return l.cfg.Node }

// IsNodeOrigin reports whether origin (scheme://host[:port]) is the public
// URL of this node or of another node in the directory: a browser page
// served by one node may talk to the others.
func (l *Lobby) IsNodeOrigin(origin string) bool {
	same := func(u string) bool { return u != "" && strings.EqualFold(strings.TrimSuffix(u, "/"), origin) }
	if same(l.URL()) {
		return true
	}
	if l.dir == nil {
		return false
	}
	l.dir.mu.Lock()
	defer l.dir.mu.Unlock()
	for _, n := range l.dir.nodes {
		if same(n.url) {
			return true
		}
	}
	return false
}

// URL returns this node's public URL.
func (l *Lobby) URL() string {
	if u := l.url.Load(); u != nil {
		return *u
	}
	return ""
}

// SetURL sets this node's public URL, shown with its rooms (for a server
// that learns its address when it starts listening).
func (l *Lobby) SetURL(u string) {
	l.url.Store(&u)
	l.pokeDirectory()
}

// pokeDirectory has the directory loop publish this node's rooms now.
func (l *Lobby) pokeDirectory() {
	select {
	case l.dirPoke <- struct{}{}:
	default:
	}
}

// remoteRoom returns a room hosted by another node.
func (l *Lobby) remoteRoom(id string) (Listing, bool) {
	if l.dir == nil {
		return Listing{}, false
	}
	li, _, ok := l.dir.lookup(id, time.Now())
	return li, ok
}

// RemoteHost returns the id of the node hosting a room of another node,
// as the directory knows it.
func (l *Lobby) RemoteHost(id string) (node string, ok bool) {
	if l.dir == nil {
		return "", false
	}
	_, node, ok = l.dir.lookup(id, time.Now())
	return node, ok
}

// startDirectory subscribes to the other nodes' updates and starts the
// loop that publishes this node's rooms; both end with the lobby.
func (l *Lobby) startDirectory() error {
	l.dir = &directory{ttl: l.cfg.DirectoryTTL, nodes: make(map[string]*remoteNode)}
	own := DirectorySubject + "." + l.cfg.Node
	sub, err := l.cfg.Bus.Subscribe(DirectorySubject+".*", func(m *bus.Msg) {
		if m.Subject == own {
			return // this node's own update
		}
		var u dirUpdate
		if err := json.Unmarshal(m.Data, &u); err != nil || u.Node == "" {
			l.cfg.Logger.Warn("directory: bad update", "subject", m.Subject, "err", err)
			return
		}
		if u.Node != l.cfg.Node {
			l.dir.update(u, time.Now())
		}
	})
	if err != nil {
		return err
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer sub.Unsubscribe()
		l.directoryLoop()
	}()
	return nil
}

// directoryLoop publishes this node's rooms until the lobby ends, and a
// "gone" update once it drains.
func (l *Lobby) directoryLoop() {
	subject := DirectorySubject + "." + l.cfg.Node
	tick := time.NewTicker(l.cfg.DirectoryEvery)
	defer tick.Stop()
	gone := false
	for {
		if !gone {
			u := dirUpdate{Node: l.cfg.Node, URL: l.URL(), Rooms: l.infos(false)}
			if l.draining.Load() {
				u.Rooms, u.Gone, gone = nil, true, true
			}
			data, _ := json.Marshal(u)
			if err := l.cfg.Bus.Publish(subject, data); err != nil {
				l.cfg.Logger.Debug("directory: publish", "err", err)
			}
		}
		select {
		case <-l.ctx.Done():
			if !gone {
				data, _ := json.Marshal(dirUpdate{Node: l.cfg.Node, Gone: true})
				_ = l.cfg.Bus.Publish(subject, data)
			}
			return
		case <-tick.C:
		case <-l.dirPoke:
		}
	}
}

// sortListings orders rooms fullest first, then by id.
func sortListings(ls []Listing) {
	slices.SortFunc(ls, func(a, b Listing) int {
		if a.Players != b.Players {
			return b.Players - a.Players
		}
		return cmp.Compare(a.ID, b.ID)
	})
}
