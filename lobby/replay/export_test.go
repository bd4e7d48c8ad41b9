package replay

import "time"

// SetSharedTimings sets how long a silent recording's listing takes to go
// stale and how long an ended recording tries to reach JetStream, until
// the returned function puts them back. Only a test with no store open
// may call it.
func SetSharedTimings(stale, drain time.Duration) (restore func()) {
	s, d := staleAfter, shipDrain
	staleAfter, shipDrain = stale, drain
	return func() { staleAfter, shipDrain = s, d }
}

// Kick has the recording's writer take what was handed over now, as its
// FlushEvery ticker would: benchmarks that make ticks faster than a room
// does call it once per second of room time.
func (r *Recorder) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}
