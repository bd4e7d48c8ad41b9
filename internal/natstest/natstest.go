// Package natstest runs a NATS server inside a test process, on
// 127.0.0.1 at a free port, for the tests of the bus and of several
// Tickwire nodes. Only tests import it.
package natstest

import (
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// Start runs a NATS server until the test ends and returns its client URL
// (nats://127.0.0.1:PORT).
func Start(t testing.TB) string {
	t.Helper()
	return start(t, &natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
}

// StartJetStream is Start with JetStream on, its files in a directory of
// the test's.
func StartJetStream(t testing.TB) string {
	t.Helper()
	return start(t, &natsserver.Options{
		Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(),
	})
}

func start(t testing.TB, opts *natsserver.Options) string {
	t.Helper()
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		t.Fatal("nats server: not ready within 10s")
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns.ClientURL()
}
