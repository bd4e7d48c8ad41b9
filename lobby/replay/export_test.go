package replay

// Kick has the recording's writer take what was handed over now, as its
// FlushEvery ticker would: benchmarks that make ticks faster than a room
// does call it once per second of room time.
func (r *Recorder) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}
