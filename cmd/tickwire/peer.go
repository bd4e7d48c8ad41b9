package main

import (
	"github.com/tickwire/tickwire/internal/flagenv"

	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/tickwire/tickwire/clients/peer"
)

// runPeer joins a call as a Pion test peer, sends a DataChannel message to
// every peer at an interval, echoes theirs, sends audio, and prints the
// counts when it stops.
func runPeer(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("peer", flag.ContinueOnError)
	server := fs.String("server", "http://127.0.0.1:8080", "server URL (http(s):// or ws(s)://)")
	call := fs.String("call", "", "call id (a game room's call uses the room id)")
	name := fs.String("name", "peer", "display name")
	token := fs.String("token", "", "auth token, when the server requires one")
	duration := fs.Duration("duration", 0, "stop after this long (0: until interrupted)")
	every := fs.Duration("send", time.Second, "how often to send a DataChannel message to every peer (0: never)")
	allIfaces := fs.Bool("all-interfaces", false, "gather ICE candidates on every interface (default: loopback only)")
	offerAll := fs.Bool("offer-all", false, "also offer to peers that join later (exercises glare)")
	noAudio := fs.Bool("no-audio", false, "do not send the audio track")
	if err := flagenv.ParseWithEnv(fs, args); err != nil {
		return err
	}
	if *call == "" {
		return errors.New("peer: -call is required")
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	p, err := peer.Join(ctx, peer.Config{
		Server: *server, Call: *call, Name: *name, Token: *token,
		AllInterfaces: *allIfaces, OfferOnJoined: *offerAll, NoAudio: *noAudio,
		Logf: func(format string, args ...any) { slog.Info(fmt.Sprintf(format, args...)) },
	})
	if err != nil {
		return err
	}
	defer p.Close()
	fmt.Printf("joined call %s as %s\n", *call, p.ID())

	var tick <-chan time.Time
	if *every > 0 {
		t := time.NewTicker(*every)
		defer t.Stop()
		tick = t.C
	}
	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case <-p.Done():
			fmt.Println("signaling connection closed")
			running = false
		case <-tick:
			p.Send()
		}
	}
	st := p.Stats()
	_ = p.Close()
	printPeerStats(os.Stdout, st)
	return nil
}

// printPeerStats writes a Peer's totals and a table of its remote peers.
func printPeerStats(w io.Writer, st peer.Stats) {
	fmt.Fprintf(w, "peer %s: datachannel out %d in %d echoes %d; rtp out %d in %d; glares %d restarts %d\n",
		st.ID, st.MessagesOut, st.MessagesIn, st.Echoes, st.RTPOut, st.RTPIn, st.Glares, st.Restarts)
	if len(st.Remotes) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "remote\tname\tstate\tconnect\topen\tmsg out\tmsg in\techoes\trtp out\trtp in\t")
	for _, r := range st.Remotes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t\n", r.ID, r.Name, r.State,
			ms(r.Connect), ms(r.Open), r.MessagesOut, r.MessagesIn, r.Echoes, r.RTPOut, r.RTPIn)
	}
	_ = tw.Flush()
}

// ms formats a duration in milliseconds, "-" for not yet.
func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}
