package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tickwire/tickwire/clients/peer"
)

// SignalingResult is one run of `bench signaling`.
type SignalingResult struct {
	Pairs  int  `json:"pairs"`
	Opened int  `json:"opened"` // pairs whose DataChannel opened on both ends
	Open   Dist `json:"open"`   // from the first join of a pair to both ends open, ms
	Join   Dist `json:"join"`   // one peer's join: connect, join, welcome, ms
}

// RunSignaling connects pairs of Pion peers at once, each pair in a call
// of its own, through t's signaling WebSocket, and measures the time from
// a pair's first join until its DataChannel is open at both ends. The
// peers use loopback host candidates and no audio track.
func RunSignaling(ctx context.Context, t *Target, pairs int, progress func(string)) (*SignalingResult, error) {
	if progress == nil {
		progress = func(string) {}
	}
	res := &SignalingResult{Pairs: pairs}
	var (
		mu      sync.Mutex // guards the fields below
		peers   []*peer.Peer
		open    samples
		joins   samples
		firstEr error
		wg      sync.WaitGroup
	)
	defer func() {
		for _, p := range peers {
			_ = p.Close()
		}
	}()
	stamp := time.Now().UnixNano()
	start := make(chan struct{})
	for i := range pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			call := fmt.Sprintf("bench-%x-%d", stamp, i)
			t0 := time.Now()
			var pair []*peer.Peer
			var err error
			for _, name := range []string{"a", "b"} {
				j0 := time.Now()
				var p *peer.Peer
				p, err = peer.Join(ctx, peer.Config{Server: t.URL, Call: call, Name: name, NoAudio: true})
				if err != nil {
					break
				}
				mu.Lock()
				joins.addDur(time.Since(j0))
				peers = append(peers, p)
				mu.Unlock()
				pair = append(pair, p)
			}
			for _, p := range pair {
				if err == nil {
					err = p.WaitOpen(ctx, 1)
				}
			}
			d := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstEr == nil {
					firstEr = err
				}
				return
			}
			open.addDur(d)
			res.Opened++
		}()
	}
	progress(fmt.Sprintf("signaling: %d pairs connecting", pairs))
	close(start)
	wg.Wait()
	if res.Opened == 0 && firstEr != nil {
		return nil, firstEr
	}
	res.Open = open.dist()
	res.Join = joins.dist()
	return res, nil
}
