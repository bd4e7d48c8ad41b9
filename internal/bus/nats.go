package bus

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// NATSConfig sets up a connection to a NATS server.
type NATSConfig struct {
	URL    string // nats://host:4222; several may be given, comma-separated
	Name   string // connection name shown by the server ("tickwire")
	Logger *slog.Logger
}

// NATS is a Bus over a NATS connection. It reconnects by itself when the
// server goes away; messages published while disconnected are buffered by
// the client (up to its reconnect buffer) and sent on reconnection.
type NATS struct {
	nc  *nats.Conn
	log *slog.Logger
}

// ConnectNATS connects to the NATS server at cfg.URL; it fails when the
// server cannot be reached now.
func ConnectNATS(cfg NATSConfig) (*NATS, error) {
	if cfg.Name == "" {
		cfg.Name = "tickwire"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger
	nc, err := nats.Connect(cfg.URL,
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats: disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats: reconnected", "url", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("nats: error", "subject", subject, "err", err)
		}),
	)
	if err != nil {
		return nil, err
	}
	return &NATS{nc: nc, log: log}, nil
}

// Conn returns the underlying connection (tests close it to play a node
// that died).
func (b *NATS) Conn() *nats.Conn { return b.nc }

func natsErr(err error) error {
	switch {
	case errors.Is(err, nats.ErrConnectionClosed):
		return errors.Join(ErrClosed, err)
	case errors.Is(err, nats.ErrNoResponders):
		return errors.Join(ErrNoResponders, err)
	case errors.Is(err, nats.ErrBadSubject):
		return errors.Join(ErrBadSubject, err)
	}
	return err
}

// Publish implements Bus.
func (b *NATS) Publish(subject string, data []byte) error {
	if err := checkSubject(subject, false); err != nil {
		return err
	}
	return natsErr(b.nc.Publish(subject, data))
}

// Subscribe implements Bus.
func (b *NATS) Subscribe(subject string, h Handler) (Subscription, error) {
	if err := checkSubject(subject, true); err != nil {
		return nil, err
	}
	sub, err := b.nc.Subscribe(subject, func(m *nats.Msg) {
		msg := &Msg{Subject: m.Subject, Data: m.Data}
		if m.Reply != "" {
			msg.respond = m.Respond
		}
		h(msg)
	})
	if err != nil {
		return nil, natsErr(err)
	}
	// Wait for the server to know the subscription, so that what anyone
	// publishes from now on reaches it. While disconnected, the client
	// subscribes again on reconnection.
	if err := b.nc.FlushTimeout(5 * time.Second); err != nil {
		b.log.Debug("nats: flush after subscribe", "subject", subject, "err", err)
	}
	return natsSub{sub}, nil
}

type natsSub struct{ sub *nats.Subscription }

// Unsubscribe implements Subscription.
func (s natsSub) Unsubscribe() error {
	err := s.sub.Unsubscribe()
	if errors.Is(err, nats.ErrBadSubscription) || errors.Is(err, nats.ErrConnectionClosed) {
		return nil // unsubscribed already, or the connection is gone
	}
	return err
}

// Request implements Bus.
func (b *NATS) Request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	if err := checkSubject(subject, false); err != nil {
		return nil, err
	}
	m, err := b.nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, natsErr(err)
	}
	return m.Data, nil
}

// Close implements Bus: it flushes what was published (for up to a
// second) and closes the connection.
func (b *NATS) Close() error {
	if b.nc.IsClosed() {
		return nil
	}
	if err := b.nc.FlushTimeout(time.Second); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		b.log.Debug("nats: flush before close", "err", err)
	}
	b.nc.Close()
	return nil
}
