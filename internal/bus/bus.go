// Package bus carries messages between Tickwire nodes: publish to a
// subject, subscribe to subjects with a handler, and request/reply. Local
// is the in-process implementation a single node uses; NATS joins nodes
// through a NATS server.
//
// Subjects are dot-separated tokens ("tickwire.dir.n1"). A subscription's
// subject may use the wildcards of NATS: `*` matches one token, `>` (last
// token only) one or more. Each subscription's handler runs on a goroutine
// of that subscription, one message at a time, in the order a publisher
// sent them; a handler must not modify Msg.Data. Every method of a Bus and
// a Subscription is safe for concurrent use.
package bus

import (
	"context"
	"errors"
	"strings"
)

// Bus is a message bus between nodes.
type Bus interface {
	// Publish sends data to every subscription whose subject matches. It
	// does not wait for the subscribers; data may be reused on return.
	Publish(subject string, data []byte) error
	// Subscribe calls h with every message published to a matching
	// subject from its return on (by any node), until the subscription is
	// unsubscribed or the bus closed.
	Subscribe(subject string, h Handler) (Subscription, error)
	// Request publishes data to subject and returns the first answer a
	// subscriber gives with Msg.Respond, ErrNoResponders when nobody
	// subscribes to subject, or ctx's error.
	Request(ctx context.Context, subject string, data []byte) ([]byte, error)
	// Close ends every subscription and, for NATS, flushes what was
	// published before it to the server. It is safe to call twice.
	Close() error
}

// Subscription is one Subscribe.
type Subscription interface {
	// Unsubscribe stops deliveries; a message being handled completes.
	// It is safe to call twice and from the handler itself.
	Unsubscribe() error
}

// Handler receives the messages of one subscription.
type Handler func(m *Msg)

// Msg is a message as a subscriber receives it.
type Msg struct {
	Subject string
	Data    []byte
	respond func(data []byte) error // nil when the sender waits for no answer
}

// Respond answers a request; it returns ErrNoReply for a plain publish.
func (m *Msg) Respond(data []byte) error {
	if m.respond == nil {
		return ErrNoReply
	}
	return m.respond(data)
}

// Errors of the bus.
var (
	ErrClosed       = errors.New("bus: closed")
	ErrNoResponders = errors.New("bus: no responders")
	ErrNoReply      = errors.New("bus: the message is not a request")
	ErrBadSubject   = errors.New("bus: bad subject")
)

// checkSubject validates a subject; wildcards are allowed when pattern is
// true (subscriptions), and never in a publish.
func checkSubject(subject string, pattern bool) error {
	if subject == "" {
		return ErrBadSubject
	}
	tokens := strings.Split(subject, ".")
	for i, t := range tokens {
		switch {
		case t == "" || strings.ContainsAny(t, " \t\r\n"):
			return ErrBadSubject
		case t == "*" || t == ">":
			if !pattern || t == ">" && i != len(tokens)-1 {
				return ErrBadSubject
			}
		}
	}
	return nil
}

func splitSubject(s string) []string { return strings.Split(s, ".") }

// matches reports whether subject (no wildcards) matches pattern.
func matches(pattern []string, subject string) bool {
	for i, p := range pattern {
		if subject == "" {
			return false
		}
		if p == ">" && i == len(pattern)-1 {
			return true
		}
		tok, rest, more := strings.Cut(subject, ".")
		if p != "*" && p != tok {
			return false
		}
		subject = rest
		if !more {
			return i == len(pattern)-1
		}
	}
	return false
}
