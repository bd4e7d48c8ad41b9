// Package wire is the Tickwire protocol in code: every message of the
// player WebSocket (binary msgpack), the spectator feeds (JSON) and the
// signaling WebSocket (JSON), with their codecs, error codes and close codes.
//
// It is a leaf package: it imports nothing else from the project, so servers
// and clients alike can depend on it. All functions are safe for concurrent
// use; values are not shared between calls.
package wire
