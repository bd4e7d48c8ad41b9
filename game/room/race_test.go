//go:build race

package room

// raceEnabled shortens the longest tests under the race detector, which
// runs them several times slower.
const raceEnabled = true
